"""OpenVINO's Python packages carry telemetry; llmtui keeps it off. Proven with an audit
hook that records every socket connection a real OpenVINO run attempts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PROBE = r"""
import ipaddress, json, socket, sys, threading
LOG = sys.argv[2]
def hook(event, args):  # inherited by the processes telemetry forks to send from
    if event == "socket.connect":
        addr = args[1]
        item = addr if isinstance(addr, str) else [str(x) for x in list(addr)[:2]]
    elif event == "socket.getaddrinfo":
        item = ["lookup", str(args[0])]
    else:
        return
    with open(LOG, "a") as fh:
        fh.write(json.dumps(item) + "\n")
sys.addaudithook(hook)

from llmtui.models.convert.steps import _quiet_tools
_quiet_tools()  # what the converter does first
import nncf  # noqa: F401  (NNCF sends telemetry from import and compression when allowed)
import openvino_telemetry
t = openvino_telemetry.Telemetry(app_name="probe", app_version="0", tid="G-0000000000",
                                 backend="ga4", enable_opt_in_dialog=False)
t.send_event("probe", "probe", "probe")
t.send_event("probe", "probe", "probe", force_send=True)

from llmtui.backends.openvino import OpenVinoBackend
backend = OpenVinoBackend()
backend.load(sys.argv[1], {"num_ctx": 512})
text = []
backend.generate({"prompt": "hi", "options": {"num_predict": 4, "temperature": 0}},
                 text.append, threading.Event())
backend.close()
import time; time.sleep(1.0)  # telemetry senders run on background threads

def local(addr):
    if isinstance(addr, str):
        return True  # AF_UNIX
    if addr[0] == "lookup":
        return addr[1] in ("localhost", "127.0.0.1", "::1")
    try:
        return ipaddress.ip_address(addr[0]).is_loopback
    except ValueError:
        return False
seen = [json.loads(line) for line in open(LOG)] if __import__("os").path.exists(LOG) else []
print(json.dumps({"outside": [a for a in seen if not local(a)], "text": "".join(text)}))
"""


def test_no_connection_leaves_the_machine(openvino_folder: Path, tmp_path: Path) -> None:
    # A fresh HOME: no consent file either way, the case in which NNCF would send (checked
    # by hand: without telemetry_off the same probe records a lookup of the analytics host).
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "connections.log"
    res = subprocess.run([sys.executable, "-c", PROBE, str(openvino_folder), str(log)], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["text"]
    assert out["outside"] == []
