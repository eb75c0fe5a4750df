"""The event model moved to events/ (issue 20): state only, every row stays where it is."""

import django.db.models.deletion
from django.db import migrations, models


def _content_type_relabel(apps, old, new):
    content_type = apps.get_model('contenttypes', 'ContentType')
    if not content_type.objects.filter(app_label=new, model='event').exists():
        content_type.objects.filter(app_label=old, model='event').update(app_label=new)


def content_type_move(apps, schema_editor):
    _content_type_relabel(apps, 'notifications', 'events')


def content_type_move_back(apps, schema_editor):
    _content_type_relabel(apps, 'events', 'notifications')


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('events', '0001_initial'),
        ('notifications', '0007_default_email_channel'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
        migrations.AlterField(
            model_name='deliveryitem',
            name='event',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='events.event'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='events',
            field=models.ManyToManyField(related_name='deliveries', through='notifications.DeliveryItem', to='events.event'),
        ),
        migrations.DeleteModel(
            name='Event',
        ),
            ],
        ),
        # Admin log entries and permissions follow the model to its new app.
        migrations.RunPython(content_type_move, content_type_move_back),
    ]
