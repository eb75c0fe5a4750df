"""The event model moves here from notifications/ (issue 20): state only, the table keeps its name."""

import django.db.models.deletion
import django.utils.timezone
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
        # The table exists (notifications 0001-0007 made it); this app takes over its state.
        ('notifications', '0007_default_email_channel'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
        migrations.CreateModel(
            name='Event',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('uuid', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('kind', models.CharField(choices=[('certificate_issued', 'New certificate issued (CT)'), ('unexpected_issuance', 'Unexpected certificate issued (CT)'), ('certificate_expiring', 'Certificate expiring'), ('certificate_expired', 'Certificate expired'), ('certificate_changed', 'Certificate changed on a server'), ('issuer_changed', 'Issuer changed'), ('server_down', 'Server down or TLS failure'), ('server_recovered', 'Server recovered'), ('finding_opened', 'Problem found'), ('finding_resolved', 'Problem resolved'), ('newer_certificate_not_deployed', 'Renewed but not deployed'), ('ips_disagree', 'Addresses serve different certificates'), ('host_discovered', 'New host discovered (CT)'), ('domain_expiring', 'Domain registration expiring'), ('agent_silent', 'Scanning agent silent'), ('service_found', 'New TLS service found in an IP range'), ('service_vanished', 'TLS service vanished from an IP range')], max_length=40)),
                ('severity', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('error', 'Error'), ('critical', 'Critical')], default='info', max_length=10)),
                ('subject', models.CharField(max_length=300)),
                ('dedup_key', models.CharField(max_length=300)),
                ('payload', models.JSONField(blank=True, default=dict)),
                ('occurred_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('dispatched_at', models.DateTimeField(blank=True, null=True)),
                ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
            ],
            options={
                'db_table': 'notifications_event',
                'ordering': ['-occurred_at', '-id'],
                'indexes': [models.Index(fields=['team', '-occurred_at'], name='event_team_recent'), models.Index(condition=models.Q(('dispatched_at', None)), fields=['id'], name='event_undispatched')],
                'constraints': [models.UniqueConstraint(fields=('team', 'dedup_key'), name='event_unique_team_dedup')],
            },
        ),
            ],
        ),
    ]
