# hes_python.py: the reference a user would write instead of hes.so, for tests/bench/compare.sh.
# A collectd-python plugin doing the same job the straightforward way: every Interval it asks
# the HES for readings (getToken once, readSingle per item and batch, urllib + json), it
# receives the pushes with paho-mqtt (QoS 1, on paho's own thread), parses them with json and
# dispatches one collectd value per reading, converted to SI, stamped with the reading's time.
# Pushes that arrive before their planId is known are kept until it is.
#
#   <Plugin python>
#     ModulePath "<dir of this file>"
#     Import "hes_python"
#     <Module hes_python>
#       URL "http://127.0.0.1:8080"  TenantCode "..."  Username "..."  Password "..."
#       SecretKey "..."  MQTTHost "127.0.0.1"  MQTTPort 1883  MeterFile "/path"
#       Item "voltageA" "currentA"  BatchSize 1000  Interval 1
#     </Module>
#   </Plugin>
import json
import threading
import time
import urllib.request

import collectd
import paho.mqtt.client as mqtt

# name: (cgcode, type, type_instance, unit the HES uses -> factor to SI)
ITEMS = {
    "voltageA": ("5050", "voltage", "A", {"V": 1.0}),
    "currentA": ("5053", "current", "A", {"A": 1.0}),
    "activePowerTotal": ("5022", "power", "total", {"kW": 1000.0, "W": 1.0}),
    "reactivePowerA": ("5031", "reactive_power", "A", {"kvar": 1000.0, "var": 1.0}),
    "powerFactorTotal": ("5046", "power_factor", "total", {"": 1.0}),
    "importActiveEnergy": ("5069", "energy_wh", "import", {"kWh": 1000.0, "Wh": 1.0}),
}

cfg = {"BatchSize": 1000, "Interval": 60.0, "MQTTPort": 1883, "Item": []}
state = {"token": None, "plans": {}, "early": {}, "client": None}
lock = threading.Lock()


def configure(conf):
    for c in conf.children:
        if c.key == "Item":
            cfg["Item"] = list(c.values)
        else:
            cfg[c.key] = c.values[0]
    with open(cfg["MeterFile"]) as f:
        cfg["meters"] = [line.strip() for line in f if line.strip()]
    collectd.register_read(read, float(cfg["Interval"]))


def post(path, body):
    headers = {"Content-Type": "application/json"}
    if state["token"]:
        headers["HES_Access_Token"] = state["token"]
    req = urllib.request.Request(cfg["URL"] + "/apis/openapi/" + path,
                                 json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.load(r)
    if answer.get("code") != 200:
        raise RuntimeError("%s: %s" % (path, answer.get("msg")))
    return answer["data"]


def handle(payload, item):
    cgcode, typ, ti, units = ITEMS[item]
    interval = float(cfg["Interval"])
    for r in payload["data"]["list"]:
        factor = units.get(r.get("unit", ""))
        if factor is None:
            continue
        v = collectd.Values(plugin="hes", plugin_instance=r["devAddr"], type=typ,
                            type_instance=ti, time=r["timestamp"] / 1000.0, interval=interval)
        v.dispatch(values=[float(r["value"]) * factor])


def on_message(client, userdata, msg):
    try:
        payload = json.loads(msg.payload)
        plan = payload["planId"]
    except (ValueError, KeyError, TypeError):
        return
    with lock:
        item = state["plans"].pop(plan, None)
        if item is None:
            state["early"][plan] = payload
            return
    handle(payload, item)


def init():
    c = mqtt.Client(client_id="hes-python-%d" % id(cfg), clean_session=True)
    c.on_message = on_message
    c.on_connect = lambda cl, u, f, rc: cl.subscribe("/%s/#" % cfg["TenantCode"], qos=1)
    c.connect(cfg["MQTTHost"], int(cfg["MQTTPort"]), keepalive=30)
    c.loop_start()
    state["client"] = c


def read():
    if state["token"] is None:
        state["token"] = post("getToken", {
            "tenantCode": cfg["TenantCode"], "username": cfg["Username"],
            "password": cfg["Password"], "secretKey": cfg["SecretKey"]})["token"]
    meters, n = cfg["meters"], int(cfg["BatchSize"])
    for item in cfg["Item"]:
        for i in range(0, len(meters), n):
            data = post("meter/readSingle", {"devList": ",".join(meters[i:i + n]),
                                             "cgcode": ITEMS[item][0],
                                             "token": state["token"]})
            with lock:
                early = state["early"].pop(data["planId"], None)
                if early is None:
                    state["plans"][data["planId"]] = item
            if early is not None:
                handle(early, item)


def shutdown():
    if state["client"] is not None:
        state["client"].loop_stop()
        state["client"].disconnect()


collectd.register_config(configure)
collectd.register_init(init)
collectd.register_shutdown(shutdown)
