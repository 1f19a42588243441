#!/usr/bin/env python3
"""Drives the reference testbed with Python's standard xmlrpc.client, as PlanetLab users' scripts did.

Usage: plcapi_client.py URL ADMIN_EMAIL ADMIN_PASSWORD. Prints OK and exits 0 when every check holds.
"""
import datetime
import sys
import xmlrpc.client

url, email, password = sys.argv[1:4]
api = xmlrpc.client.ServerProxy(url, allow_none=True)
admin = {"AuthMethod": "password", "Username": email, "AuthString": password}


def stamp(t):
    """A time to send: xmlrpc.client refuses ints beyond 32 bits, so times past 2038 go as a float."""
    return t if -2**31 <= t < 2**31 else float(t)


def fault_code(call, *args):
    try:
        call(*args)
    except xmlrpc.client.Fault as fault:
        return fault.faultCode
    raise AssertionError("expected a fault")


assert api.AuthCheck(admin) == 1
assert fault_code(api.AuthCheck, dict(admin, AuthString="wrong")) == 103

# Nodes by filter, as users picked them.
nodes = api.GetNodes(admin, {"hostname": "*.princeton.edu", "boot_state": "boot"}, ["node_id", "hostname", "site_id"])
assert len(nodes) >= 3, nodes
assert set(nodes[0]) == {"node_id", "hostname", "site_id"}
sorted_nodes = api.GetNodes(admin, {"-SORT": "hostname", "-LIMIT": 5}, ["hostname"])
assert [n["hostname"] for n in sorted_nodes] == sorted(n["hostname"] for n in sorted_nodes)
assert fault_code(api.GetNodes, admin, {"no_such_field": 1}) == 102
site = api.GetSites(admin, "princeton", ["site_id", "login_base"])[0]
assert site["login_base"] == "princeton"

# A PI of princeton does the slice work, as a PI's script would.
person_id = api.AddPerson(admin, {"email": "pi@princeton.test", "password": "pipw", "first_name": "P", "last_name": "I"})
api.AddPersonToSite(admin, person_id, "princeton")
api.AddRoleToPerson(admin, "pi", person_id)
pi = {"AuthMethod": "password", "Username": "pi@princeton.test", "AuthString": "pipw"}

assert fault_code(api.AddSlice, pi, {"name": "williams_nope", "description": "d", "url": "u"}) == 108
assert fault_code(api.AddSlice, pi, {"name": "Not A Name"}) == 102
slice_id = api.AddSlice(pi, {"name": "princeton_pyscript", "description": "xmlrpc.client test",
                             "url": "http://example.org", "instantiation": "plc-instantiated"})
hosts = [n["hostname"] for n in nodes[:3]]
assert api.AddSliceToNodes(pi, "princeton_pyscript", hosts) == 1
assert api.AddSliceToNodes(pi, slice_id, hosts) == 1, "binding twice is harmless"
record = api.GetSlices(pi, [slice_id])[0]
assert sorted(record["node_ids"]) == sorted(n["node_id"] for n in nodes[:3])

# Renew by raising expires, then read back what was granted. Times are ints (sent as i8 past 2038).
old = record["expires"]
assert isinstance(old, int) and isinstance(record["created"], int), record
assert api.UpdateSlice(pi, slice_id, {"expires": stamp(old + 7 * 86400)}) == 1
new = api.GetSlices(pi, {"name": "princeton_pyscript"}, ["expires"])[0]["expires"]
assert old < new <= old + 7 * 86400, (old, new)
# A datetime goes as dateTime.iso8601, read as UTC.
later = datetime.datetime.fromtimestamp(new + 86400, tz=datetime.timezone.utc)
assert api.UpdateSlice(pi, slice_id, {"expires": later}) == 1
newer = api.GetSlices(pi, [slice_id], ["expires"])[0]["expires"]
assert new < newer <= new + 86400, (new, newer)
assert len(api.GetSlices(pi, {"[expires": stamp(newer), "]expires": stamp(newer)})) == 1
assert fault_code(api.UpdateSlice, pi, slice_id, {"expires": 1}) == 102

ticket = api.GetSliceTicket(pi, slice_id)
assert isinstance(ticket, str) and ticket

assert api.DeleteSliceFromNodes(pi, slice_id, hosts[:1]) == 1
assert api.DeleteSliceFromNodes(pi, slice_id, hosts[:1]) == 1, "unbinding twice is harmless"
assert len(api.GetSlices(pi, [slice_id])[0]["node_ids"]) == 2
assert api.DeleteSlice(pi, slice_id) == 1
assert api.GetSlices(pi, [slice_id]) == []
assert fault_code(api.DeleteSlice, pi, slice_id) == 102
assert fault_code(api.NoSuchMethod, pi) == 100
print("OK")
