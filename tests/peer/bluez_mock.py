#!/usr/bin/python3
"""A stand-in for bluetoothd and a phone, on a private D-Bus bus, for tests/ble_gatt.rs.

As bluetoothd it owns `org.bluez` and offers adapter hci0 with Adapter1, GattManager1 and
LEAdvertisingManager1. On RegisterApplication it reads the application's objects with
GetManagedObjects, as bluetoothd does; on RegisterAdvertisement it reads the
advertisement's properties.

As a phone it bridges a TCP socket to the registered service: once a client connects to
the port it prints, it subscribes to the box's notify characteristic (StartNotify, then
PropertiesChanged signals carry the value, as bluetoothd emits them to a remote device),
and writes what the client sends to the guest characteristic with WriteValue, chunked
to the ATT MTU minus 3, with the options bluetoothd passes (device, mtu, link, type).

With INTRUDER_MTU a second phone ("intruder", another device address) does the same
through a port of its own. As bluetoothd does, the application's StartNotify is called
once, for the first subscriber, and every notification goes to every subscribed phone,
cut to that phone's MTU minus 3 (reported as "truncated").

Every event is printed to stdout as one JSON line.

usage: bluez_mock.py BUS_ADDRESS MTU [INTRUDER_MTU]
"""

import json
import socket
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

SERVICE = "6b1d0001-8e5c-4a6e-9a3e-2f4c1e0b7a51"
GUEST_TO_HOST = "6b1d0002-8e5c-4a6e-9a3e-2f4c1e0b7a51"
HOST_TO_GUEST = "6b1d0003-8e5c-4a6e-9a3e-2f4c1e0b7a51"
ADAPTER = "/org/bluez/hci0"
PHONE = ADAPTER + "/dev_5C_F3_70_12_34_56"
INTRUDER = ADAPTER + "/dev_66_66_66_66_66_66"
PROPS = "org.freedesktop.DBus.Properties"


def say(**event):
    print(json.dumps(event), flush=True)


class Root(dbus.service.Object):
    """`/`: the object manager bluer asks for adapters."""

    def __init__(self, bus, adapter):
        super().__init__(bus, "/")
        self.adapter = adapter

    @dbus.service.method("org.freedesktop.DBus.ObjectManager", out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        return {
            dbus.ObjectPath(ADAPTER): {
                "org.bluez.Adapter1": self.adapter.props,
                "org.bluez.GattManager1": {},
                "org.bluez.LEAdvertisingManager1": {
                    "ActiveInstances": dbus.Byte(0),
                    "SupportedInstances": dbus.Byte(5),
                },
            }
        }


class Adapter(dbus.service.Object):
    def __init__(self, bus, phones):
        super().__init__(bus, ADAPTER)
        self.bus = bus
        self.phones = phones
        self.props = {
            "Address": "DC:A6:32:0B:1E:7F",
            "AddressType": "public",
            "Name": "intercom-mock",
            "Alias": "intercom-mock",
            "Powered": dbus.Boolean(False),
            "Discoverable": dbus.Boolean(False),
            "Pairable": dbus.Boolean(False),
            "Discovering": dbus.Boolean(False),
            "UUIDs": dbus.Array([], signature="s"),
            "Class": dbus.UInt32(0),
        }

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        if interface == "org.bluez.Adapter1" and name in self.props:
            return self.props[name]
        raise dbus.exceptions.DBusException("no property " + name, name="org.freedesktop.DBus.Error.InvalidArgs")

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return self.props if interface == "org.bluez.Adapter1" else {}

    @dbus.service.method(PROPS, in_signature="ssv")
    def Set(self, interface, name, value):
        self.props[name] = value
        say(set={name: bool(value) if isinstance(value, dbus.Boolean) else str(value)})

    @dbus.service.method("org.bluez.GattManager1", in_signature="oa{sv}", sender_keyword="sender",
                         async_callbacks=("reply", "error"))
    def RegisterApplication(self, path, options, sender=None, reply=None, error=None):
        def got(objects):
            chars = {}
            services = []
            for obj, ifaces in objects.items():
                if "org.bluez.GattService1" in ifaces:
                    services.append(str(ifaces["org.bluez.GattService1"]["UUID"]))
                if "org.bluez.GattCharacteristic1" in ifaces:
                    c = ifaces["org.bluez.GattCharacteristic1"]
                    chars[str(c["UUID"])] = (str(obj), [str(f) for f in c["Flags"]])
            say(registered_app=str(path), services=services,
                characteristics={u: f for u, (_, f) in chars.items()})
            for phone in self.phones:
                phone.app_registered(sender, chars)
            reply()

        app = self.bus.get_object(sender, path)
        app.GetManagedObjects(dbus_interface="org.freedesktop.DBus.ObjectManager",
                              reply_handler=got, error_handler=error)

    @dbus.service.method("org.bluez.GattManager1", in_signature="o")
    def UnregisterApplication(self, path):
        say(unregistered_app=str(path))

    @dbus.service.method("org.bluez.LEAdvertisingManager1", in_signature="oa{sv}", sender_keyword="sender",
                         async_callbacks=("reply", "error"))
    def RegisterAdvertisement(self, path, options, sender=None, reply=None, error=None):
        def got(props):
            say(advertisement={
                "Type": str(props.get("Type", "")),
                "LocalName": str(props.get("LocalName", "")),
                "ServiceUUIDs": [str(u) for u in props.get("ServiceUUIDs", [])],
            })
            reply()

        adv = self.bus.get_object(sender, path)
        adv.GetAll("org.bluez.LEAdvertisement1", dbus_interface=PROPS,
                   reply_handler=got, error_handler=error)

    @dbus.service.method("org.bluez.LEAdvertisingManager1", in_signature="o")
    def UnregisterAdvertisement(self, path):
        say(unregistered_advertisement=str(path))


class Phone:
    """A phone that connected over LE, relaying a TCP client's bytes."""

    # bluetoothd calls the application's StartNotify once, for the first subscriber.
    notifying = False

    def __init__(self, bus, mtu, label="phone", device=PHONE):
        self.bus = bus
        self.mtu = mtu
        self.label = label
        self.device = device
        self.chars = None
        self.sender = None
        self.client = None
        self.pending = b""
        self.writing = False
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        GLib.io_add_watch(self.listener.fileno(), GLib.IO_IN, self.accept)
        self.largest_notification = 0
        self.truncated = 0
        say(port=self.listener.getsockname()[1], phone=label)

    def app_registered(self, sender, chars):
        self.sender, self.chars = sender, chars
        self.maybe_start()

    def accept(self, *_):
        self.client, _ = self.listener.accept()
        GLib.io_add_watch(self.client.fileno(), GLib.IO_IN | GLib.IO_HUP, self.from_client)
        self.maybe_start()
        return False

    def maybe_start(self):
        if self.chars is None or self.client is None:
            return
        notify_path, flags = self.chars[HOST_TO_GUEST]
        self.bus.add_signal_receiver(self.notified, signal_name="PropertiesChanged",
                                     dbus_interface=PROPS, path=notify_path, bus_name=self.sender)
        if not Phone.notifying:
            Phone.notifying = True
            char = self.bus.get_object(self.sender, notify_path)
            char.StartNotify(dbus_interface="org.bluez.GattCharacteristic1",
                             reply_handler=lambda: say(subscribed=True, phone=self.label),
                             error_handler=lambda e: say(error="StartNotify: " + str(e)))
        self.flush()

    def notified(self, interface, changed, invalidated):
        if "Value" not in changed:
            return
        value = bytes(changed["Value"])
        if len(value) > self.mtu - 3:
            if self.label == "phone":
                say(error="a notification of %d bytes does not fit MTU %d" % (len(value), self.mtu))
            # What BlueZ does for a subscriber with a smaller MTU: cut the value.
            value = value[: self.mtu - 3]
            self.truncated += 1
            say(truncated=len(value), phone=self.label)
        self.largest_notification = max(self.largest_notification, len(value))
        if self.client:
            self.client.sendall(value)
        # Each one, so that a test that stalls can tell how far the box's bytes came.
        say(notified=len(value), phone=self.label)

    def from_client(self, fd, condition):
        data = self.client.recv(65536) if condition & GLib.IO_IN else b""
        if not data:
            say(client_closed=True, largest_notification=self.largest_notification,
                phone=self.label)
            self.client.close()
            self.client = None
            return False
        self.pending += data
        self.flush()
        return True

    def flush(self):
        """Writes pending bytes, one WriteValue at a time, in order."""
        if self.writing or not self.pending or self.chars is None:
            return
        chunk, self.pending = self.pending[: self.mtu - 3], self.pending[self.mtu - 3:]
        write_path, _ = self.chars[GUEST_TO_HOST]
        char = self.bus.get_object(self.sender, write_path)
        options = {
            "device": dbus.ObjectPath(self.device),
            "mtu": dbus.UInt16(self.mtu),
            "link": "LE",
            "type": "command",
        }
        self.writing = True

        def done():
            self.writing = False
            say(wrote=len(chunk), phone=self.label)
            self.flush()

        def failed(e):
            self.writing = False
            say(write_failed=e.get_dbus_name(), phone=self.label)

        char.WriteValue(dbus.Array(chunk, signature="y"), options,
                        dbus_interface="org.bluez.GattCharacteristic1",
                        reply_handler=done, error_handler=failed)


def main():
    address, mtu = sys.argv[1], int(sys.argv[2])
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    phones = [Phone(bus, mtu)]
    if len(sys.argv) > 3:
        phones.append(Phone(bus, int(sys.argv[3]), "intruder", INTRUDER))
    adapter = Adapter(bus, phones)
    Root(bus, adapter)
    name = dbus.service.BusName("org.bluez", bus)  # noqa: F841 (held for the process)
    say(ready=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
