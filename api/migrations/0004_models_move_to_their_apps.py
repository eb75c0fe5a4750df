"""API keys, claims, held enrolments and uploaded certificates moved to their apps (issue 20): state
only, every row stays where it is."""

import django.db.models.deletion
from django.db import migrations, models


MOVED = {
    'apikey': 'accounts',
    'claim': 'accounts',
    'claimblock': 'accounts',
    'pendingenrolment': 'monitors',
    'uploadedcertificate': 'certificates',
}


def _relabel(apps, backwards):
    content_type = apps.get_model('contenttypes', 'ContentType')
    for model, app in MOVED.items():
        old, new = (app, 'api') if backwards else ('api', app)
        if not content_type.objects.filter(app_label=new, model=model).exists():
            content_type.objects.filter(app_label=old, model=model).update(app_label=new)


def content_types_move(apps, schema_editor):
    _relabel(apps, backwards=False)


def content_types_move_back(apps, schema_editor):
    _relabel(apps, backwards=True)


class Migration(migrations.Migration):

    dependencies = [
        ('certificates', '0009_uploadedcertificate_moves_here'),
        ('monitors', '0009_pendingenrolment_moves_here'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('accounts', '0003_api_keys_and_claims_move_here'),
        ('api', '0003_auth_epoch'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(
                    model_name='apikey',
                    name='team',
                ),
                migrations.RemoveField(
                    model_name='apikey',
                    name='user',
                ),
                migrations.AlterField(
                    model_name='auditentry',
                    name='api_key',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='accounts.apikey'),
                ),
                migrations.RemoveField(
                    model_name='uploadedcertificate',
                    name='api_key',
                ),
                migrations.RemoveField(
                    model_name='claim',
                    name='api_key',
                ),
                migrations.RemoveField(
                    model_name='pendingenrolment',
                    name='api_key',
                ),
                migrations.RemoveField(
                    model_name='claim',
                    name='team',
                ),
                migrations.RemoveField(
                    model_name='claim',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='ClaimBlock',
                ),
                migrations.RemoveField(
                    model_name='pendingenrolment',
                    name='team',
                ),
                migrations.RemoveField(
                    model_name='uploadedcertificate',
                    name='added_by',
                ),
                migrations.RemoveField(
                    model_name='uploadedcertificate',
                    name='certificate',
                ),
                migrations.RemoveField(
                    model_name='uploadedcertificate',
                    name='team',
                ),
                migrations.DeleteModel(
                    name='ApiKey',
                ),
                migrations.DeleteModel(
                    name='Claim',
                ),
                migrations.DeleteModel(
                    name='PendingEnrolment',
                ),
                migrations.DeleteModel(
                    name='UploadedCertificate',
                ),
            ],
        ),
        # Admin log entries and permissions follow the models to their new apps.
        migrations.RunPython(content_types_move, content_types_move_back),
    ]
