"""Drives the ServiceNow instance emulator with ServiceNow's own Python client, pysnc.

Usage: servicenow_pysnc_check.py <instance-url> <ca-pem-path> <user> <password>

Creates, queries and updates records through the Table API, uploads and reads back an
attachment, and checks that the emulator refuses what an instance refuses (a change that
jumps states, a user without roles). Prints "pysnc: all checks passed" on success.
"""
import json
import sys

from pysnc import ServiceNowClient
from pysnc.exceptions import RequestException, RoleException, UpdateException

url, ca, user, password = sys.argv[1:5]
client = ServiceNowClient(url, (user, password), verify=ca)

# Create an incident.
gr = client.GlideRecord("incident")
gr.initialize()
gr.short_description = "pay.example.com: connection not private"
gr.impact = "1"
gr.urgency = "2"
gr.category = "Certificate"
gr.correlation_id = "pysnc:1"
sys_id = gr.insert()
assert sys_id, "insert returned no sys_id"

# Query it back: encoded query, row count, values and display values.
q = client.GlideRecord("incident")
q.add_query("correlation_id", "pysnc:1")
q.add_query("category", "Certificate")
q.query()
assert q.get_row_count() == 1, q.get_row_count()
assert q.next()
number = q.get_value("number")
assert number.startswith("INC"), number
assert q.get_value("priority") == "2", q.get_value("priority")
assert q.get_display_value("state") == "New", q.get_display_value("state")
assert q.get_display_value("priority") == "2 - High"

# Update it: state and a work note.
q.state = "2"
q.work_notes = "updated by pysnc"
q.update()
g = client.GlideRecord("incident")
assert g.get(sys_id)
assert g.get_value("state") == "2", g.get_value("state")
assert g.get_display_value("state") == "In Progress"

# Attach evidence and read it back.
g.add_attachment("evidence.json", json.dumps({"checked": True}).encode(), "application/json")
attachments = g.get_attachments()
names = []
for a in attachments:
    names.append(a.file_name)
    assert json.loads(a.read()) == {"checked": True}
assert names == ["evidence.json"], names

# A change may not jump from New to Implement.
chg = client.GlideRecord("change_request")
chg.initialize()
chg.short_description = "Renew shop.example.com"
chg_id = chg.insert()
c = client.GlideRecord("change_request")
assert c.get(chg_id)
c.state = "-1"
try:
    c.update()
    raise AssertionError("the emulator let a change jump from New to Implement")
except (RequestException, UpdateException) as e:
    assert "Invalid state transition" in str(e), str(e)

# A user without roles is refused by the ACL.
reader = ServiceNowClient(url, ("reader", "reader-password"), verify=ca)
r = reader.GlideRecord("incident")
try:
    r.query()
    r.next()
    raise AssertionError("the ACL let a user without roles read incidents")
except RoleException:
    pass

print(f"created {number}")
print("pysnc: all checks passed")
