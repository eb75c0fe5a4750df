"""The fault drill behind `make faults` and scripts/fault_drill.py (issue 21)."""
