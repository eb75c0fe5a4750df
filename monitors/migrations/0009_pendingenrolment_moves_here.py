"""Held enrolments move here from api/ (issue 20): state only, the table keeps its name."""

import django.db.models.deletion
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('api', '0003_auth_epoch'),
        ('accounts', '0003_api_keys_and_claims_move_here'),
        ('monitors', '0008_server_agent_watcheddomain_agent'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='PendingEnrolment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('uuid', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('kind', models.CharField(choices=[('server', 'Server'), ('certificate', 'Certificate')], max_length=12)),
                        ('host', models.CharField(blank=True, max_length=253)),
                        ('port', models.PositiveIntegerField(blank=True, null=True)),
                        ('der', models.BinaryField(blank=True, null=True)),
                        ('sha256', models.CharField(blank=True, max_length=64)),
                        ('not_after', models.DateTimeField(blank=True, null=True)),
                        ('api_key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='pending_enrolments', to='accounts.apikey')),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
                    ],
                    options={
                        'db_table': 'api_pendingenrolment',
                        'ordering': ['created_at', 'id'],
                        'constraints': [models.UniqueConstraint(fields=('api_key', 'kind', 'host', 'port', 'sha256'), name='pendingenrolment_unique_item')],
                    },
                ),
            ],
        ),
    ]
