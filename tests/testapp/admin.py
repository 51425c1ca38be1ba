from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from tests.testapp.models import AuditedWidget

admin.site.register(AuditedWidget, SimpleHistoryAdmin)
