"""API keys and claims move here from api/ (issue 20): state only, the tables keep their names."""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('api', '0003_auth_epoch'),
        ('accounts', '0002_user_notification_email_confirmed_at'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ClaimBlock',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('email', models.EmailField(max_length=254, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_ip', models.GenericIPAddressField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'api_claimblock',
                    },
                ),
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('uuid', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('name', models.CharField(blank=True, max_length=100)),
                        ('key_hash', models.CharField(max_length=64, unique=True)),
                        ('display_prefix', models.CharField(max_length=16)),
                        ('scopes', models.JSONField(default=list)),
                        ('source', models.CharField(choices=[('dashboard', 'Created in the dashboard'), ('api', 'Created through the API'), ('claim', 'Claimed by a script')], default='dashboard', max_length=10)),
                        ('claim_email', models.EmailField(blank=True, max_length=254)),
                        ('confirmed_at', models.DateTimeField(blank=True, null=True)),
                        ('created_ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('last_used_ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'api_apikey',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Claim',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('uuid', models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('email', models.EmailField(max_length=254)),
                        ('kind', models.CharField(choices=[('new_account', 'New account'), ('new_key', 'New key for an existing account')], max_length=12)),
                        ('state', models.CharField(choices=[('pending', 'Waiting for confirmation'), ('confirmed', 'Confirmed'), ('revoked', 'Revoked'), ('blocked', 'Blocked'), ('expired', 'Expired')], default='pending', max_length=10)),
                        ('requested_ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('user_agent', models.CharField(blank=True, max_length=200)),
                        ('decided_at', models.DateTimeField(blank=True, null=True)),
                        ('api_key', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='claim', to='accounts.apikey')),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_claims', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'api_claim',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.AddIndex(
                    model_name='apikey',
                    index=models.Index(fields=['user', 'confirmed_at'], name='apikey_user_confirmed'),
                ),
            ],
        ),
    ]
