#!/usr/bin/env python3
"""Interop suite: real SIP user agents (baresip, Debian package `baresip`) against the built edge.

    tests/interop/run.py [path/to/oneinbox-edge] [--only NAME,...] [--keep]

baresip plays the carrier and the AI agents. Each one sends a sine tone of its own (`aufile` source,
WAVs written here at 8 kHz) and records what it receives (the `sndfile` filter), so audio is checked
both ways by its dominant frequency (Goertzel over a grid), not just by being non-silent. The runner
starts the edge on loopback with a fresh data dir, creates agents and numbers through the REST API,
drives each baresip over its ctrl_tcp socket (JSON netstrings: commands in, call events out) and reads
the call records and voicemails back through the API.

Bounded: every wait has a time-out, the whole run has one (SUITE_TIMEOUT_S), and every process started
here (the edges, every baresip) is killed on exit, whatever happens. Only loopback addresses are used;
ports come from a random block away from 5060 so suites running side by side do not collide.

A scenario marked `xfail` documents a known edge bug: when it fails with that bug's symptom (a `Symptom`
failure) it prints XFAIL with the reason and does not fail the suite; any other failure of it is a FAIL;
if it passes, it prints XPASS and fails the suite, so the mark is removed together with the fix. A `skip` scenario prints why it does not run (never a fake pass).
"""

import argparse
import glob
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import wave

SUITE_TIMEOUT_S = 170
RATE = 8000
CARRIER_HZ = 440
AGENT_HZ = 1000
FALLBACK_HZ = 1500
TRUNK_HZ = 2000
ALAW_HZ = 1800
TRANSFER_TARGET = "+14155550177"
MODULES = "/usr/lib/baresip/modules"


class Failed(Exception):
    pass


class Symptom(Failed):
    """A failure that is the symptom of the known bug a scenario is marked expected-to-fail for; any other
    failure of that scenario is a plain FAIL."""


class SuiteTimeout(BaseException):
    """SUITE_TIMEOUT_S passed: stops the run wherever it is (not caught as a scenario's failure)."""


def check(cond, what):
    if not cond:
        raise Failed(what)


def wait_for(pred, timeout, what, step=0.05):
    """Polls pred() until it returns a true value (returned) or timeout seconds pass (Failed)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failed(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------- audio

def write_tone(path, hz, secs=40, amp=8000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(amp * math.sin(2 * math.pi * hz * i / RATE)))
                               for i in range(int(secs * RATE))))


def read_wav(path):
    """Mono 16-bit samples and the sample rate of a WAV file, also one baresip is still writing (its
    header's sizes are filled in only when the call ends): the samples are whatever follows the `data`
    chunk header."""
    with open(path, "rb") as f:
        raw = f.read()
    check(raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", f"{path}: not a WAV file")
    fmt = raw.find(b"fmt ")
    check(fmt > 0, f"{path}: no fmt chunk")
    _, ch, rate, _, _, bits = struct.unpack("<HHIIHH", raw[fmt + 8: fmt + 24])
    check(bits == 16, f"{path}: {bits}-bit samples, expected 16")
    data = raw.find(b"data", fmt)
    check(data > 0, f"{path}: no data chunk")
    body = raw[data + 8:]
    samples = struct.unpack(f"<{len(body) // 2}h", body[: len(body) // 2 * 2])
    return samples[::ch], rate


def goertzel_power(samples, rate, hz):
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def dominant(samples, rate):
    """(frequency of the strongest component between 100 and 3400 Hz on a 20 Hz grid, then refined to
    2 Hz; share of the signal's energy within +-20 Hz of it; RMS)."""
    n = len(samples)
    if n == 0:
        return 0, 0.0, 0.0
    mean = sum(samples) / n
    xs = [x - mean for x in samples]
    energy = sum(x * x for x in xs)
    rms = math.sqrt(energy / n)
    if energy == 0:
        return 0, 0.0, 0.0
    coarse = max(range(100, 3401, 20), key=lambda f: goertzel_power(xs, rate, f))
    fine = max(range(coarse - 20, coarse + 21, 2), key=lambda f: goertzel_power(xs, rate, f))
    # Parseval: a pure tone's Goertzel power over n samples is about energy * n / 2.
    band = sum(goertzel_power(xs, rate, f) for f in (fine - 2, fine, fine + 2))
    share = min(1.0, band / (energy * n / 2)) if energy else 0.0
    return fine, share, rms


def check_tone(path, want_hz, what, min_secs=1.0, window_secs=1.0, at="end"):
    """The recording's last (or first) window_secs holds want_hz as its dominant frequency."""
    check(path and os.path.exists(path), f"{what}: no recording")
    samples, rate = read_wav(path)
    secs = len(samples) / rate
    check(secs >= min_secs, f"{what}: {secs:.2f} s of audio recorded, want at least {min_secs} s")
    w = int(window_secs * rate)
    # Skip the last 0.2 s (the call may end mid-packet) and take a window before it.
    chunk = samples[-w - rate // 5:-(rate // 5)] if at == "end" else samples[rate // 5: rate // 5 + w]
    hz, share, rms = dominant(chunk, rate)
    check(rms > 200, f"{what}: near silence (RMS {rms:.0f}) in {os.path.basename(path)}")
    check(abs(hz - want_hz) <= 10 and share > 0.5,
          f"{what}: dominant {hz} Hz ({share:.0%} of the energy), want {want_hz} Hz in {os.path.basename(path)}")
    return f"{hz} Hz ({share:.0%}, {secs:.1f} s)"


# ---------------------------------------------------------------- processes

PROCS = []  # every Popen started here; killed at exit


def spawn(argv, log_path, **kw):
    log = open(log_path, "wb")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    PROCS.append(p)
    return p


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
    end = time.monotonic() + 3
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(timeout=3)


def port_free(port, ip="127.0.0.1"):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((ip, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


class Edge:
    """The built edge on loopback with a config of its own."""

    def __init__(self, binary, work, name, sip_port, api_port, rtp, udp=True, extra="", sip_extra=""):
        self.binary, self.dir, self.sip_port, self.api_port, self.rtp = binary, f"{work}/{name}", sip_port, api_port, rtp
        os.makedirs(self.dir)
        self.config = f"{self.dir}/edge.toml"
        udp_line = f'"127.0.0.1:{sip_port}"' if udp else '"off"'
        with open(self.config, "w") as f:
            f.write(f"""[sip]
udp = {udp_line}
tcp = "127.0.0.1:{sip_port}"
{sip_extra}[api]
listen = "127.0.0.1:{api_port}"
[storage]
data_dir = "{self.dir}/data"
[log]
format = "human"
level = "info"
[routing]
# Short, so the no-answer fallback scenario is quick.
agent_ring_timeout_s = 3
agent_setup_timeout_ms = 2000
[media]
enabled = true
public_ip = "127.0.0.1"
bind_ip = "127.0.0.1"
rtp_ports = "{rtp[0]}-{rtp[1]}"
port_quarantine_ms = 500
socket_cache = 0
voicemail_max_length_s = 30
voicemail_silence_limit_s = 10
[security]
verify_number_ownership = false
# The baresip agents listen on loopback.
internal_targets = ["127.0.0.0/8"]
[inventory.twilio]
base_url = "http://127.0.0.1:9"
[inventory.telnyx]
base_url = "http://127.0.0.1:9"
# The baresip carrier sends from 127.0.0.1; the agents are on 127.0.0.3 and up.
[[carriers]]
name = "baresip-carrier"
allow = ["127.0.0.1/32"]
{extra}""")
        self.proc = spawn([binary, "serve", "--config", self.config], f"{self.dir}/edge.log")
        wait_for(self._api_up, 15, f"edge {name} API on {api_port}")
        out = subprocess.run([binary, "keys", "create", "--config", self.config, "--name", "interop"],
                             capture_output=True, text=True, timeout=30, check=True)
        self.key = out.stdout.strip().splitlines()[-1]

    def _api_up(self):
        if self.proc.poll() is not None:
            raise Failed(f"edge exited: {tail(self.dir + '/edge.log')}")
        try:
            socket.create_connection(("127.0.0.1", self.api_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def api(self, method, path, body=None, raw=False):
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.key}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            raise Failed(f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}")
        return data if raw else json.loads(data)

    def agent(self, name, uri, **fields):
        return self.api("POST", "/v1/agents", {"name": name, "sip_uri": uri, "max_concurrent_calls": 10,
                                               **fields})["id"]

    def number(self, e164, primary, fallback=None, voicemail_message=None):
        routing = {"agent_id": primary}
        if fallback:
            routing["fallback"] = {"agent_id": fallback}
        if voicemail_message:
            routing["voicemail_message"] = voicemail_message
        return self.api("POST", "/v1/phone-numbers/purchase",
                        {"phone_number": e164, "agent_id": primary, "inbound_routing": routing})["id"]

    def call_record(self, to, timeout=5):
        """The newest call record to `to` once it has ended."""
        def ended():
            calls = [c for c in self.api("GET", "/v1/calls?limit=100")["data"] if c["to"] == to]
            calls = [c for c in calls if c.get("ended_at")]
            return calls[0] if calls else None
        return wait_for(ended, timeout, f"an ended call record to {to}", step=0.2)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join("      " + l[:300] for l in lines[-n:])
    except OSError:
        return "      (no log)"


class Baresip:
    """One baresip user agent: its own config dir, SIP address, RTP ports, tone and recordings; driven
    through ctrl_tcp (netstring JSON)."""

    def __init__(self, work, name, ip, sip_port, ctrl_port, rtp_base, tone, answermode="manual", tcp=False,
                 codecs="pcmu", certificate=None, mediaenc=None, cafile=None, rtp_span=40):
        self.name, self.ip, self.sip_port = name, ip, sip_port
        self.dir = f"{work}/{name}"
        self.rec = f"{self.dir}/rec"
        os.makedirs(self.rec)
        with open(f"{self.dir}/config", "w") as f:
            f.write(f"""poll_method epoll
sip_listen {ip}:{sip_port}
call_local_timeout 60
call_max_calls 4
audio_source aufile,{tone}
audio_buffer 20
rtp_ports {rtp_base}-{rtp_base + rtp_span - 1}
rtcp_mux no
jitter_buffer_delay 1-5
net_interface 127.0.0.1
module_path {MODULES}
module g711.so
module aufile.so
module sndfile.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
snd_path {self.rec}
statmode_default off
""")
            if certificate:
                # TLS on sip_listen's port + 1 (baresip 1.0), with this certificate and key (one PEM file).
                f.write(f"sip_certificate {certificate}\n")
            if cafile:
                # Trusted for the TLS connections it opens (the edge's listener).
                f.write(f"sip_cafile {cafile}\n")
            if mediaenc:
                f.write("module srtp.so\n")
        transport = ";transport=tcp" if tcp else ""
        self.aor = f"sip:{name}@{ip}:{sip_port}{transport}"
        with open(f"{self.dir}/accounts", "w") as f:
            enc = f";mediaenc={mediaenc}" if mediaenc else ""
            f.write(f"<{self.aor}>;regint=0;answermode={answermode};audio_codecs={codecs}{enc}\n")
        self.log = f"{self.dir}/baresip.log"
        # -s: SIP trace in the log (the TCP and hold scenarios read it).
        self.proc = spawn(["baresip", "-s", "-f", self.dir], self.log)
        self.events, self.responses = [], {}
        self.cond = threading.Condition()
        self.token = 0
        self.sock = wait_for(lambda: self._connect(ctrl_port), 10, f"{name} ctrl_tcp on {ctrl_port}")
        threading.Thread(target=self._reader, daemon=True).start()

    def _connect(self, port):
        if self.proc.poll() is not None:
            raise Failed(f"baresip {self.name} exited:\n{tail(self.log)}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            return None

    def _reader(self):
        buf = b""
        self.sock.settimeout(None)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                m = re.match(rb"(\d+):", buf)
                if not m or len(buf) < m.end() + int(m.group(1)) + 1:
                    break
                n = int(m.group(1))
                payload, buf = buf[m.end(): m.end() + n], buf[m.end() + n + 1:]
                try:
                    msg = json.loads(payload)
                except ValueError:
                    continue
                with self.cond:
                    if msg.get("event"):
                        self.events.append(msg)
                    elif msg.get("response"):
                        self.responses[msg.get("token")] = msg
                    self.cond.notify_all()

    def cmd(self, command, params="", timeout=5):
        with self.cond:
            self.token += 1
            tok = str(self.token)
        body = json.dumps({"command": command, "params": params, "token": tok}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        with self.cond:
            if not self.cond.wait_for(lambda: tok in self.responses, timeout):
                raise Failed(f"{self.name}: no answer to command {command} {params}")
            r = self.responses.pop(tok)
        check(r.get("ok", True), f"{self.name}: command {command} {params} failed: {r}")
        return r

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait_event(self, types, since, timeout, what=None):
        """The first event of one of `types` after index `since`."""
        types = (types,) if isinstance(types, str) else types
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((e for e in self.events[since:] if e.get("type") in types), None), timeout)
        if not found:
            seen = [e.get("type") for e in self.events[since:]]
            raise Failed(f"{self.name}: no {what or '/'.join(types)} within {timeout}s (events: {seen})")
        return found

    def has_event(self, types, since):
        with self.cond:
            return [e for e in self.events[since:] if e.get("type") in types]

    def recordings(self):
        return set(glob.glob(f"{self.rec}/*-dec.wav"))

    def new_recording(self, before):
        new = sorted(self.recordings() - before, key=os.path.getmtime)
        return new[-1] if new else None

    def sip_trace(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")


def rtp_received(ua):
    """RTP packets the call's audio stream has received (baresip's audio_debug: `rcvd=N`)."""
    counts = [int(n) for n in re.findall(r"rcvd=(\d+)", ua.cmd("audio_debug")["data"])]
    return max(counts, default=0)


# ---------------------------------------------------------------- scenarios

class Suite:
    """Port block b (a free multiple of 1,000 in 41000-57000): b SIP and b+1 API of the edge, b+2/b+3 of the
    TCP-only edge, b+4/b+5 of the TLS-agent edge, b+6/b+7 and b+8 (TLS) of the SRTP edge; b+10..b+24 SIP
    (a TLS port is a baresip's SIP port + 1) and b+30..b+41 ctrl_tcp of the baresips; b+42..b+81 the RTP of
    the SRTP carrier and agent (20 each), b+100..b+459 the others' (40 each); media.rtp_ports: b+460..b+529
    the TLS-agent edge, b+530..b+599 the SRTP edge, b+600..b+799 the main edge, b+800..b+999 the TCP-only one."""

    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.base = self._pick_base()
        b = self.base
        self.tones = {}
        for hz in (CARRIER_HZ, AGENT_HZ, FALLBACK_HZ, TRUNK_HZ, ALAW_HZ):
            self.tones[hz] = f"{work}/tone-{hz}.wav"
            write_tone(self.tones[hz], hz)
        self.edge = Edge(binary, work, "edge", b, b + 1, (b + 600, b + 799))
        e = self.edge
        # The carrier dials from 127.0.0.1 (the edge's carrier allow list); agents live on 127.0.0.3+.
        # Offers PCMU and PCMA, as carriers do; the agents choose (all PCMU but the A-law fallback).
        self.carrier = Baresip(work, "carrier", "127.0.0.1", b + 10, b + 30, b + 100, self.tones[CARRIER_HZ],
                               codecs="pcmu,pcma")
        self.agent = Baresip(work, "agent", "127.0.0.3", b + 11, b + 31, b + 140, self.tones[AGENT_HZ], "auto")
        self.fallback = Baresip(work, "fallback", "127.0.0.4", b + 12, b + 32, b + 180, self.tones[FALLBACK_HZ], "auto")
        # Rings and never answers, or rejects, as each scenario tells it.
        self.ringer = Baresip(work, "ringer", "127.0.0.5", b + 13, b + 33, b + 220, self.tones[AGENT_HZ], "manual")
        # The trunk a transfer to a number leaves through: answers INVITEs for TRANSFER_TARGET.
        self.trunk = Baresip(work, TRANSFER_TARGET, "127.0.0.7", b + 16, b + 36, b + 340, self.tones[TRUNK_HZ], "auto")
        self.agent_id = e.agent("baresip-agent", f"sip:agent@127.0.0.3:{b + 11}")
        self.fallback_id = e.agent("baresip-fallback", f"sip:fallback@127.0.0.4:{b + 12}")
        self.ringer_id = e.agent("baresip-ringer", f"sip:ringer@127.0.0.5:{b + 13}")
        # A fallback that speaks A-law only (the early-media scenario).
        self.alaw = Baresip(work, "alaw", "127.0.0.9", b + 18, b + 38, b + 380, self.tones[ALAW_HZ], "auto",
                            codecs="pcma")
        self.alaw_id = e.agent("baresip-alaw", f"sip:alaw@127.0.0.9:{b + 18}")
        # Nobody listens there: the INVITE is never answered, not even with 100 Trying.
        self.dead_id = e.agent("dead-agent", f"sip:dead@127.0.0.8:{b + 17}")
        self.did = {
            "bridge": "+14155550101",
            "hold": "+14155550102",
            "noanswer": "+14155550103",
            "reject": "+14155550104",
            "voicemail": "+14155550105",
            "transfer": "+14155550106",
            "unreachable": "+14155550107",
            "early": "+14155550108",
            "srtp_both": "+14155550197",
            "srtp_carrier": "+14155550196",
            "srtp_agent": "+14155550109",
        }
        e.number(self.did["bridge"], self.agent_id)
        e.number(self.did["hold"], self.agent_id)
        e.number(self.did["noanswer"], self.ringer_id, fallback=self.fallback_id)
        e.number(self.did["reject"], self.ringer_id, fallback=self.fallback_id)
        e.number(self.did["unreachable"], self.dead_id, fallback=self.fallback_id)
        e.number(self.did["early"], self.ringer_id, fallback=self.alaw_id)
        self.vm_number_id = e.number(self.did["voicemail"], self.ringer_id, voicemail_message="Leave a message.")
        # A bring-your-own number whose outbound trunk is the baresip trunk: transfers to numbers leave there.
        e.api("POST", "/v1/phone-numbers", {
            "phone_number": self.did["transfer"], "provider": "telnyx", "agent_id": self.agent_id,
            "inbound_routing": {"agent_id": self.agent_id},
            "provider_config": {"trunk_address": f"127.0.0.7:{b + 16}", "auth_username": "oneinbox",
                                "auth_password": "interop-trunk-secret"}})
        self.tcp = None  # the TCP-only edge and peers, started by their scenario
        self.tls = None  # the TLS agent's edge and peer, started by their scenario
        self.srtp = None  # the SRTP edge (TLS listener), SRTP carrier and SRTP agent, started by their scenarios

    def _pick_base(self):
        for _ in range(50):
            b = random.randrange(41000, 58000, 1000)
            if all(port_free(b + o) for o in (0, 1, 2, 3)) and \
               all(port_free(b + o, ip) for o, ip in ((10, "127.0.0.1"), (11, "127.0.0.3"), (12, "127.0.0.4"),
                                                       (13, "127.0.0.5"), (14, "127.0.0.1"), (15, "127.0.0.6"),
                                                       (16, "127.0.0.7"), (17, "127.0.0.8"), (18, "127.0.0.9"),
                                                       (4, "127.0.0.1"), (5, "127.0.0.1"), (19, "127.0.0.10"),
                                                       (20, "127.0.0.10"), (6, "127.0.0.1"), (7, "127.0.0.1"),
                                                       (8, "127.0.0.1"), (21, "127.0.0.1"), (22, "127.0.0.1"),
                                                       (23, "127.0.0.11"), (24, "127.0.0.11"), (40, "127.0.0.1"),
                                                       (41, "127.0.0.1"))):
                return b
        raise Failed("no free port block")

    def pki(self):
        """The test CA (made with openssl once per run): its directory, with ca.pem."""
        d = f"{self.work}/tls-pki"
        if not os.path.exists(f"{d}/ca.pem"):
            os.makedirs(d, exist_ok=True)
            self._ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                       "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=interop-ca", "-addext",
                       "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature")
        return d

    def _ossl(self, *args):
        subprocess.run(["openssl", *args], cwd=f"{self.work}/tls-pki", check=True, capture_output=True, timeout=30)

    def pki_issue(self, name, ip):
        """A certificate for `ip` from the test CA: writes name.crt, name.key and name.pem (both, for
        baresip's sip_certificate); returns the .pem path."""
        d = self.pki()
        self._ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                   "-out", f"{name}.csr", "-subj", f"/CN={ip}")
        with open(f"{d}/{name}.cnf", "w") as f:
            f.write(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        self._ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                   "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.cnf")
        with open(f"{d}/{name}.pem", "w") as f:
            f.write(open(f"{d}/{name}.crt").read() + open(f"{d}/{name}.key").read())
        return f"{d}/{name}.pem"

    def dial(self, did, edge=None, tcp=False, carrier=None, tls=False):
        edge, carrier = edge or self.edge, carrier or self.carrier
        if tls:
            uri = f"sip:{did}@127.0.0.1:{edge.tls_port};transport=tls"
        else:
            uri = f"sip:{did}@127.0.0.1:{edge.sip_port}" + (";transport=tcp" if tcp else "")
        since = carrier.mark()
        carrier.cmd("dial", uri)
        return since

    def established(self, ua, since, timeout=10):
        return ua.wait_event("CALL_ESTABLISHED", since, timeout)

    def closed(self, ua, since, timeout=10):
        return ua.wait_event("CALL_CLOSED", since, timeout)

    def hang_up(self, ua, since_closed):
        ua.cmd("hangup")
        self.closed(ua, since_closed, 5)

    def relay_port_seen(self, ua, start_text):
        """The source port baresip latched its incoming RTP on, after `start_text` in its log."""
        log = ua.sip_trace()
        ports = re.findall(r"incoming rtp for 'audio' established, receiving from [\d.]+:(\d+)", log[start_text:])
        return int(ports[-1]) if ports else None

    # -- 1. carrier -> edge -> agent, audio both ways
    def s_bridge_audio(self):
        c, a, e = self.carrier, self.agent, self.edge
        crec, arec, clog = c.recordings(), a.recordings(), len(c.sip_trace())
        a_since = a.mark()
        since = self.dial(self.did["bridge"])
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(3)
        c_since, a_since2 = c.mark(), a.mark()
        self.hang_up(c, c_since)
        self.closed(a, a_since2, 5)
        heard_by_carrier = check_tone(c.new_recording(crec), AGENT_HZ, "carrier hears the agent", min_secs=1.5)
        heard_by_agent = check_tone(a.new_recording(arec), CARRIER_HZ, "agent hears the carrier", min_secs=1.5)
        port = self.relay_port_seen(c, clog)
        check(port is not None and e.rtp[0] <= port <= e.rtp[1],
              f"carrier's RTP comes from port {port}, not from the edge's relay ports {e.rtp}")
        rec = e.call_record(self.did["bridge"])
        check(rec["status"] == "completed" and rec["answered_by"] == "primary" and rec["hangup_by"] == "caller",
              f"call record: status {rec['status']}, answered_by {rec['answered_by']}, hangup_by {rec['hangup_by']}")
        return (f"carrier hears {heard_by_carrier}, agent hears {heard_by_agent}; carrier's RTP from relay port "
                f"{port}; record completed/primary/caller")

    # -- 2. primary rings and never answers: the edge cancels it after agent_ring_timeout_s; fallback answers
    def s_fallback_no_answer(self):
        c, r, f = self.carrier, self.ringer, self.fallback
        crec, r_since, f_since = c.recordings(), r.mark(), f.mark()
        since = self.dial(self.did["noanswer"])
        r.wait_event("CALL_INCOMING", r_since, 5, "INVITE at the primary")
        t0 = time.monotonic()
        self.closed(r, r_since, 8)  # CANCEL from the edge
        waited = time.monotonic() - t0
        self.established(f, f_since, 5)
        self.established(c, since, 5)
        time.sleep(2.5)
        c_since, f_since2 = c.mark(), f.mark()
        self.hang_up(c, c_since)
        self.closed(f, f_since2, 5)
        heard = check_tone(c.new_recording(crec), FALLBACK_HZ, "carrier hears the fallback agent")
        rec = self.edge.call_record(self.did["noanswer"])
        check(rec["answered_by"] == "fallback" and rec["status"] == "completed",
              f"call record: answered_by {rec['answered_by']}, status {rec['status']}")
        check(len(rec["hops"]) >= 2, f"call record has {len(rec['hops'])} hops, want primary and fallback")
        return f"primary rang, cancelled after {waited:.1f} s; carrier hears the fallback at {heard}; record fallback/completed"

    # -- 3. primary rejects (baresip answers 486): the edge tries the fallback at once
    def s_fallback_reject(self):
        c, r, f = self.carrier, self.ringer, self.fallback
        crec, r_since, f_since = c.recordings(), r.mark(), f.mark()
        since = self.dial(self.did["reject"])
        r.wait_event("CALL_INCOMING", r_since, 5, "INVITE at the primary")
        t0 = time.monotonic()
        r.cmd("hangup")  # baresip rejects a ringing incoming call (486)
        r.wait_event("CALL_CLOSED", r_since, 5)
        self.established(f, f_since, 5)
        took = time.monotonic() - t0
        self.established(c, since, 5)
        time.sleep(2.5)
        c_since, f_since2 = c.mark(), f.mark()
        self.hang_up(c, c_since)
        self.closed(f, f_since2, 5)
        heard = check_tone(c.new_recording(crec), FALLBACK_HZ, "carrier hears the fallback agent")
        rec = self.edge.call_record(self.did["reject"])
        statuses = [h.get("sip_status") for h in rec["hops"]]
        check(rec["answered_by"] == "fallback", f"call record: answered_by {rec['answered_by']}")
        check(any(s and 400 <= s < 700 for s in statuses if isinstance(s, int)),
              f"call record hops' SIP statuses {statuses}: no rejection recorded for the primary")
        return f"primary rejected ({statuses}), fallback answered {took * 1000:.0f} ms after the reject; carrier hears {heard}"

    # -- 3b. primary unreachable (nothing listens at its address): fallback after agent_setup_timeout_ms
    def s_fallback_unreachable(self):
        c, f = self.carrier, self.fallback
        crec, f_since = c.recordings(), f.mark()
        t0 = time.monotonic()
        since = self.dial(self.did["unreachable"])
        self.established(f, f_since, 8)
        took = time.monotonic() - t0
        self.established(c, since, 5)
        time.sleep(2.5)
        c_since, f_since2 = c.mark(), f.mark()
        self.hang_up(c, c_since)
        self.closed(f, f_since2, 5)
        heard = check_tone(c.new_recording(crec), FALLBACK_HZ, "carrier hears the fallback agent")
        rec = self.edge.call_record(self.did["unreachable"])
        check(rec["answered_by"] == "fallback", f"call record: answered_by {rec['answered_by']}")
        check(1.5 <= took <= 6, f"the fallback rang {took:.1f} s after the dial, want about agent_setup_timeout_ms (2 s)")
        return f"fallback rang {took:.1f} s after the dial (setup time-out 2 s); carrier hears {heard}"

    # -- 3c. early media, then fallback with the other G.711 law: the primary sends 183 with SDP (PCMU) and
    # then rejects; the A-law fallback answers. The carrier must still hear the fallback's tone.
    def s_early_media_then_alaw_fallback(self):
        c, r, f = self.carrier, self.ringer, self.alaw
        crec, frec, r_since, f_since, clog = c.recordings(), f.recordings(), r.mark(), f.mark(), len(c.sip_trace())
        r.cmd("answermode", "early")
        try:
            since = self.dial(self.did["early"])
            wait_for(lambda: re.search(r"SIP/2.0 183", c.sip_trace()[clog:]), 5, "the primary's 183 at the carrier")
            time.sleep(1)
            r.cmd("hangup")
        finally:
            r.cmd("answermode", "manual")
        self.established(f, f_since, 5)
        self.established(c, since, 5)
        time.sleep(2.5)
        c_since, f_since2 = c.mark(), f.mark()
        self.hang_up(c, c_since)
        self.closed(f, f_since2, 5)
        problems = []
        try:
            heard = check_tone(c.new_recording(crec), ALAW_HZ, "carrier hears the A-law fallback")
        except Failed as err:
            problems.append(str(err))
            heard = None
        try:
            heard_by_fallback = check_tone(f.new_recording(frec), CARRIER_HZ, "the A-law fallback hears the carrier")
        except Failed as err:
            problems.append(str(err))
            heard_by_fallback = None
        # The o= lines of the edge's 183 and 200 to the carrier: one session (user and id; version may grow).
        origins = [o for first, _, body in sip_messages(c.sip_trace()[clog:], bodies=True)
                   if re.match(r"SIP/2\.0 (18\d|2\d\d)", first) for o in re.findall(r"(?m)^o=[^\r\n]*", body)]
        check(len(origins) >= 2, f"the carrier got {len(origins)} SDP answers, want the 183's and the 200's")
        if len({o.rsplit(" ", 4)[0] for o in origins}) > 1:
            problems.append(f"the carrier's 183 and 200 carry different SDP sessions: {origins}")
        # ... and the same codec: the 200 repeats the 183's answer (the relay converts the law if needed).
        formats = [m for first, _, body in sip_messages(c.sip_trace()[clog:], bodies=True)
                   if re.match(r"SIP/2\.0 (18\d|2\d\d)", first) for m in re.findall(r"(?m)^m=audio [^\r\n]*", body)]
        if len({m.split(" ", 3)[-1] for m in formats}) > 1:
            problems.append(f"the carrier's 183 and 200 offer different codecs: {formats}")
        if problems:
            raise Symptom("; ".join(problems))
        return (f"183 from the primary, then the A-law fallback answered; carrier hears {heard}, "
                f"fallback hears {heard_by_fallback}")

    # -- 4. voicemail: greeting, beep, the caller's tone recorded, '#' (RFC 4733) ends it
    def s_voicemail_dtmf(self):
        c, r, e = self.carrier, self.ringer, self.edge
        crec, r_since = c.recordings(), r.mark()
        since = self.dial(self.did["voicemail"])
        r.wait_event("CALL_INCOMING", r_since, 5, "INVITE at the only agent")
        r.cmd("hangup")
        self.established(c, since, 8)
        # Greeting ("Leave a message.") and beep take about 2 s; then 3 s of 440 Hz.
        time.sleep(5)
        c_since = c.mark()
        c.cmd("sndcode", "#")
        t0 = time.monotonic()
        self.closed(c, c_since, 5)  # the edge hangs up after '#'
        took = time.monotonic() - t0
        greeting_samples, _ = read_wav(c.new_recording(crec))
        greet_rms = math.sqrt(sum(x * x for x in greeting_samples) / max(1, len(greeting_samples)))
        check(greet_rms > 100, f"carrier heard no greeting (RMS {greet_rms:.0f})")

        def stored():
            vms = e.api("GET", f"/v1/voicemails?phone_number_id={self.vm_number_id}")["data"]
            return vms[0] if vms else None
        vm = wait_for(stored, 5, "the voicemail in GET /v1/voicemails", step=0.2)
        check(vm["ended_by"] == "dtmf-hash", f"voicemail ended_by {vm['ended_by']}, want dtmf-hash")
        wav = f"{self.work}/voicemail.wav"
        with open(wav, "wb") as f:
            f.write(e.api("GET", f"/v1/voicemails/{vm['id']}/recording", raw=True))
        tone = check_tone(wav, CARRIER_HZ, "voicemail recording holds the caller's tone", min_secs=1.5)
        rec = e.call_record(self.did["voicemail"])
        check(rec["answered_by"] == "voicemail", f"call record answered_by {rec['answered_by']}")
        return (f"edge hung up {took:.1f} s after '#'; greeting heard (RMS {greet_rms:.0f}); "
                f"voicemail {vm['duration_ms']} ms, ended_by dtmf-hash, holds {tone}")

    # -- 5. hold and resume: re-INVITE a=sendonly then a=sendrecv from the carrier, relayed to the agent
    def s_hold_resume(self):
        c, a = self.carrier, self.agent
        crec, arec = c.recordings(), a.recordings()
        clog, alog = len(c.sip_trace()), len(a.sip_trace())
        a_since = a.mark()
        since = self.dial(self.did["hold"])
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(2)
        heard_c = check_tone(c.new_recording(crec), AGENT_HZ, "carrier hears the agent before the hold", min_secs=1)
        heard_a = check_tone(a.new_recording(arec), CARRIER_HZ, "agent hears the carrier before the hold", min_secs=1)
        c.cmd("hold")
        wait_for(lambda: re.search(r"a=sendonly", a.sip_trace()[alog:]), 5, "the sendonly re-INVITE at the agent")
        wait_for(lambda: re.search(r"SIP/2.0 200 OK.*?a=recvonly", c.sip_trace()[clog:], re.S), 5,
                 "a 200 OK with a=recvonly at the carrier")
        time.sleep(2)
        a_mid, c_mid = len(a.sip_trace()), len(c.sip_trace())
        c.cmd("resume")
        wait_for(lambda: re.search(r"INVITE sip:.*?a=sendrecv", a.sip_trace()[a_mid:], re.S), 5,
                 "the sendrecv re-INVITE at the agent")
        wait_for(lambda: re.search(r"SIP/2.0 200 OK.*?a=sendrecv", c.sip_trace()[c_mid:], re.S), 5,
                 "a 200 OK with a=sendrecv at the carrier")
        # baresip 1.0 drops its sndfile filter from the receive pipeline on a re-INVITE (the same happens
        # between two baresips without the edge), so after the resume the RTP packet counters of its
        # audio_debug show the audio flowing; the tones were checked by frequency before the hold.
        rx_c, rx_a = rtp_received(c), rtp_received(a)
        time.sleep(2)
        got_c, got_a = rtp_received(c) - rx_c, rtp_received(a) - rx_a
        check(got_c >= 75 and got_a >= 75,
              f"RTP after resume: carrier received {got_c} packets, agent {got_a} in 2 s (want 75+ each)")
        check(not c.has_event(("CALL_CLOSED",), since) and not a.has_event(("CALL_CLOSED",), a_since),
              "the call ended during hold/resume")
        c_since, a_since2 = c.mark(), a.mark()
        self.hang_up(c, c_since)
        self.closed(a, a_since2, 5)
        rec = self.edge.call_record(self.did["hold"])
        check(rec["status"] == "completed", f"call record status {rec['status']}")
        return (f"before the hold carrier hears {heard_c}, agent hears {heard_a}; sendonly/recvonly then "
                f"sendrecv relayed both ways; after the resume RTP flows: {got_c} and {got_a} packets in 2 s")

    # -- 6. TCP only: an edge with UDP off; carrier and agent use TCP for everything
    def s_tcp_only(self):
        b = self.base
        if self.tcp is None:
            edge = Edge(self.binary, self.work, "edge-tcp", b + 2, b + 3, (b + 800, b + 999), udp=False)
            carrier = Baresip(self.work, "carrier-tcp", "127.0.0.1", b + 14, b + 34, b + 260,
                              self.tones[CARRIER_HZ], tcp=True)
            agent = Baresip(self.work, "agent-tcp", "127.0.0.6", b + 15, b + 35, b + 300,
                            self.tones[AGENT_HZ], "auto", tcp=True)
            agent_id = edge.agent("baresip-agent-tcp", f"sip:agent-tcp@127.0.0.6:{b + 15};transport=tcp")
            edge.number("+14155550199", agent_id)
            self.tcp = (edge, carrier, agent)
        edge, c, a = self.tcp
        crec, arec = c.recordings(), a.recordings()
        a_since = a.mark()
        since = self.dial("+14155550199", edge=edge, tcp=True, carrier=c)
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(2.5)
        c_since, a_since2 = c.mark(), a.mark()
        c.cmd("hangup")
        problems = []
        try:
            self.closed(a, a_since2, 5)  # the carrier's BYE must reach the edge (over TCP) and go on
        except Failed as err:
            problems.append(f"the agent's leg did not end after the carrier's BYE ({err})")
        try:
            self.closed(c, c_since, 3)
        except Failed as err:
            problems.append(str(err))
        heard_c = check_tone(c.new_recording(crec), AGENT_HZ, "carrier (TCP) hears the agent")
        heard_a = check_tone(a.new_recording(arec), CARRIER_HZ, "agent (TCP) hears the carrier")
        for ua in (c, a):
            # baresip's SIP trace (-s) heads every message with "UDP|TCP src -> dst", then its first line.
            udp = re.findall(r"(?m)^UDP ([\d.:]+ -> [\d.:]+)\s*\n\s*(\S+ \S+)", ua.sip_trace())
            if udp:
                problems.append(f"{ua.name} sent or got {len(udp)} SIP messages over UDP, the first "
                                f"{udp[0][1]!r} ({udp[0][0]})")
        for ua in (c, a):
            contacts = re.findall(r"(?im)^(?:Contact|m):\s*(<sip:[^>]*edge[^>]*>)", ua.sip_trace())
            bad = sorted({x for x in contacts if "transport=tcp" not in x.lower()})
            if bad:
                problems.append(f"{ua.name} got the edge's Contact {bad[0]} without ;transport=tcp")
        if problems:
            raise Symptom("; ".join(problems))
        return f"all SIP over TCP, edge UDP off; carrier hears {heard_c}, agent hears {heard_a}"

    # -- 6b. an agent reached over TLS (agent sip_uri `sips:`): the edge checks its certificate (a test CA
    # given as `outbound.tls_extra_roots`, made with openssl) and relays tones both ways.
    def s_tls_agent(self):
        b = self.base
        if self.tls is None:
            d = self.pki()
            agent_pem = self.pki_issue("agent", "127.0.0.10")
            edge = Edge(self.binary, self.work, "edge-tls", b + 4, b + 5, (b + 460, b + 529),
                        extra=f'[outbound]\ntls_extra_roots = ["{d}/ca.pem"]\n')
            agent = Baresip(self.work, "agent-tls", "127.0.0.10", b + 19, b + 39, b + 420, self.tones[AGENT_HZ],
                            "auto", certificate=agent_pem)
            agent_id = edge.agent("baresip-agent-tls", f"sips:agent-tls@127.0.0.10:{b + 20}")
            edge.number("+14155550198", agent_id)
            self.tls = (edge, agent)
        edge, a = self.tls
        c = self.carrier
        crec, arec = c.recordings(), a.recordings()
        a_since = a.mark()
        since = self.dial("+14155550198", edge=edge)
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(2.5)
        c_since, a_since2 = c.mark(), a.mark()
        self.hang_up(c, c_since)
        self.closed(a, a_since2, 5)
        heard_c = check_tone(c.new_recording(crec), AGENT_HZ, "carrier hears the TLS agent")
        heard_a = check_tone(a.new_recording(arec), CARRIER_HZ, "TLS agent hears the carrier")
        trace = a.sip_trace()
        check(re.search(r"(?m)^TLS ", trace) is not None, "the agent's SIP trace shows no message over TLS")
        vias = re.findall(r"(?im)^(?:Via|v):\s*SIP/2.0/(\w+)", trace)
        check(vias and all(v.upper() == "TLS" for v in vias), f"Via transports at the agent: {sorted(set(vias))}")
        rec = edge.call_record("+14155550198")
        check(rec["status"] == "completed", f"call record status {rec['status']}")
        return f"SIP over TLS to the agent (certificate checked); carrier hears {heard_c}, agent hears {heard_a}"

    # -- 6c. SRTP (SDES) per leg, issue 20. A fourth edge with a TLS listener (a certificate for 127.0.0.1
    # from the test CA) whose carrier has `media_encryption = "srtp_required"`; the SRTP carrier is a
    # baresip with `mediaenc=srtp-mand` that trusts the CA and dials that listener; the SRTP agent is a
    # baresip with `mediaenc=srtp-mand` and a certificate for 127.0.0.11, created with
    # `media_encryption: "srtp_required"` (on this edge as `sips:`, on the main edge, whose carrier is
    # plain, as `sip:` over UDP). The plain agent behind the SRTP carrier is the main `agent`.
    def srtp_peers(self):
        b = self.base
        if self.srtp is None:
            d = self.pki()
            self.pki_issue("edge", "127.0.0.1")
            agent_pem = self.pki_issue("agent-srtp", "127.0.0.11")
            edge = Edge(self.binary, self.work, "edge-srtp", b + 6, b + 7, (b + 530, b + 599),
                        sip_extra=f'tls = "127.0.0.1:{b + 8}"\ntls_certificate = "{d}/edge.crt"\n'
                                  f'tls_private_key = "{d}/edge.key"\n',
                        extra=f'media_encryption = "srtp_required"\n[outbound]\ntls_extra_roots = ["{d}/ca.pem"]\n')
            edge.tls_port = b + 8
            carrier = Baresip(self.work, "carrier-srtp", "127.0.0.1", b + 21, b + 40, b + 42, self.tones[CARRIER_HZ],
                              codecs="pcmu,pcma", mediaenc="srtp-mand", cafile=f"{d}/ca.pem", rtp_span=20)
            agent = Baresip(self.work, "agent-srtp", "127.0.0.11", b + 23, b + 41, b + 62, self.tones[AGENT_HZ],
                            "auto", certificate=agent_pem, mediaenc="srtp-mand", rtp_span=20)
            srtp_id = edge.agent("baresip-agent-srtp", f"sips:agent-srtp@127.0.0.11:{b + 24}",
                                 media_encryption="srtp_required")
            edge.number(self.did["srtp_both"], srtp_id)
            plain_id = edge.agent("baresip-agent-plain", f"sip:agent@127.0.0.3:{b + 11}")
            edge.number(self.did["srtp_carrier"], plain_id)
            main_srtp_id = self.edge.agent("baresip-agent-srtp", f"sip:agent-srtp@127.0.0.11:{b + 23}",
                                           media_encryption="srtp_required")
            self.edge.number(self.did["srtp_agent"], main_srtp_id)
            self.srtp = (edge, carrier, agent)
        return self.srtp

    def _srtp_call(self, edge, c, a, did, tls, carrier_srtp, agent_srtp):
        """A call from c through edge to a: tones both ways; the SDP each side sent and got is RTP/SAVP with
        a=crypto exactly where its leg is SRTP; no key crosses the edge (baresip's traces show them in
        clear); the edge's stored trace has the agent's offer with the key masked and no key in clear."""
        crec, arec = c.recordings(), a.recordings()
        clog, alog = len(c.sip_trace()), len(a.sip_trace())
        a_since = a.mark()
        since = self.dial(did, edge=edge, carrier=c, tls=tls)
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(2.5)
        c_since, a_since2 = c.mark(), a.mark()
        self.hang_up(c, c_since)
        self.closed(a, a_since2, 5)
        heard_c = check_tone(c.new_recording(crec), AGENT_HZ, "carrier hears the agent")
        heard_a = check_tone(a.new_recording(arec), CARRIER_HZ, "agent hears the carrier")

        def sdp(trace, first_re):
            """The body of the first message whose first line matches and that carries SDP."""
            for first, method, body in sip_messages(trace, bodies=True):
                if method == "INVITE" and re.match(first_re, first) and "m=audio" in body:
                    return body
            raise Failed(f"no {first_re!r} with SDP in the trace")
        legs = {"carrier's offer": (sdp(c.sip_trace()[clog:], r"INVITE "), carrier_srtp),
                "edge's answer to the carrier": (sdp(c.sip_trace()[clog:], r"SIP/2\.0 200"), carrier_srtp),
                "edge's offer to the agent": (sdp(a.sip_trace()[alog:], r"INVITE "), agent_srtp),
                "agent's answer": (sdp(a.sip_trace()[alog:], r"SIP/2\.0 200"), agent_srtp)}
        keys = {}
        for what, (body, srtp) in legs.items():
            m = re.search(r"(?m)^m=audio \d+ (\S+)", body)
            proto = m.group(1) if m else None
            crypto = re.findall(r"(?m)^a=crypto:\d+ (\S+) inline:([A-Za-z0-9+/=]+)", body)
            want = "RTP/SAVP" if srtp else "RTP/AVP"
            check(proto == want, f"{what}: m=audio with {proto}, want {want}")
            check(bool(crypto) == srtp, f"{what}: {len(crypto)} a=crypto lines on a {want} leg")
            keys[what] = {k for _, k in crypto}
        carrier_keys = keys["carrier's offer"] | keys["edge's answer to the carrier"]
        agent_keys = keys["edge's offer to the agent"] | keys["agent's answer"]
        check(not carrier_keys & agent_keys, "a key of the carrier's leg was used on the agent's leg")
        check(not keys["carrier's offer"] & keys["edge's answer to the carrier"]
              and not keys["edge's offer to the agent"] & keys["agent's answer"], "the edge answered with the peer's own key")
        rec = edge.call_record(did)
        check(rec["status"] == "completed", f"call record status {rec['status']}")

        def stored_trace():
            try:
                return edge.api("GET", f"/v1/calls/{rec['id']}/trace")
            except Failed:
                return None  # 404 until it is stored, about 1.5 s after the end
        trace = wait_for(stored_trace, 6, "the call's stored SIP trace", step=0.3)
        text = json.dumps(trace)
        for k in carrier_keys | agent_keys:
            check(k not in text and k.rstrip("=") not in text, "a key in clear in the edge's stored trace")
        offers = [m for m in trace["messages"] if m["direction"] == "out" and m["leg"].startswith("agent")
                  and m["start_line"].startswith("INVITE ")]
        check(offers, f"no INVITE to the agent in the stored trace (legs {[l['leg'] for l in trace['legs']]})")
        body = offers[0].get("body") or ""
        if agent_srtp:
            check("RTP/SAVP" in body and re.search(r"(?m)^a=crypto:\d+ \S+ inline:X{20,}", body),
                  f"the stored offer to the agent is not RTP/SAVP with a masked a=crypto: {body[-300:]!r}")
        enc = lambda on: "SRTP" if on else "plain"
        return (f"carrier {enc(carrier_srtp)}{' over TLS' if tls else ''}, agent {enc(agent_srtp)}; carrier hears "
                f"{heard_c}, agent hears {heard_a}; {len(carrier_keys)} + {len(agent_keys)} keys, none shared; "
                f"stored trace masks them")

    def s_srtp_tls_both(self):
        edge, c, a = self.srtp_peers()
        # baresip 1.0 does not check the server's certificate on the TLS connections it opens (a carrier
        # given a CA that did not sign the edge's certificate still calls), so the edge's certificate is
        # checked here: signed by the test CA, valid for 127.0.0.1, TLS 1.2 or 1.3.
        ctx = ssl.create_default_context(cafile=f"{self.pki()}/ca.pem")
        try:
            with socket.create_connection(("127.0.0.1", edge.tls_port), timeout=5) as raw, \
                 ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                version = tls.version()
        except (OSError, ssl.SSLError) as err:
            raise Failed(f"the edge's TLS listener: {err}")
        check(version in ("TLSv1.2", "TLSv1.3"), f"the edge's TLS listener negotiated {version}")
        detail = self._srtp_call(edge, c, a, self.did["srtp_both"], True, True, True)
        vias = re.findall(r"(?im)^(?:Via|v):\s*SIP/2.0/(\w+)", c.sip_trace()) + \
            re.findall(r"(?im)^(?:Via|v):\s*SIP/2.0/(\w+)", a.sip_trace())
        check(vias and all(v.upper() == "TLS" for v in vias), f"Via transports at carrier and agent: {sorted(set(vias))}")
        return detail + f"; all SIP over TLS (edge's certificate checked, {version})"

    def s_srtp_carrier_plain_agent(self):
        edge, c, _ = self.srtp_peers()
        return self._srtp_call(edge, c, self.agent, self.did["srtp_carrier"], True, True, False)

    def s_plain_carrier_srtp_agent(self):
        _, _, a = self.srtp_peers()
        return self._srtp_call(self.edge, self.carrier, a, self.did["srtp_agent"], False, False, True)

    # -- 7. blind transfer (REFER, issue 19 item 1). >>> PLACE FOR THE TRANSFER SCENARIOS <<<
    # REFER is being built in src/call. Until the edge accepts it, both scenarios send a real REFER from
    # the agent and, when the edge refuses it (405/501), are SKIPPED with that status printed; they never
    # pass by default. Once the edge answers 202 they run their checks (written from issue 19: 202, the
    # target answers, the carrier hears the target's tone, the agent's leg ends, the record shows it);
    # adjust them to what is built.
    def _refer(self, did, refer_to, target, target_hz):
        c, a = self.carrier, self.agent
        crec, alog = c.recordings(), len(a.sip_trace())
        a_since, t_since = a.mark(), target.mark()
        since = self.dial(did)
        self.established(c, since)
        self.established(a, a_since)
        time.sleep(1)
        a_closed = a.mark()
        a.cmd("transfer", refer_to)
        status = wait_for(lambda: refer_status(a.sip_trace()[alog:]), 5, "the edge's answer to REFER")
        if status in (405, 501):
            # baresip ends the whole call when its REFER is refused; hang up in case it has not yet.
            if not c.has_event(("CALL_CLOSED",), since):
                try:
                    c.cmd("hangup", timeout=2)
                except Failed:
                    pass
            self.closed(c, since, 5)
            raise Skip(f"the edge answers REFER with {status}: blind transfer is not built yet "
                       f"(issue 19 item 1, in progress in src/call)")
        check(status == 202, f"the edge answered REFER with {status}, want 202 Accepted")
        self.established(target, t_since, 10)
        self.closed(a, a_closed, 10)  # the agent's leg ends once the target answers
        time.sleep(2.5)
        check(not c.has_event(("CALL_CLOSED",), since), "the caller's call ended with the transfer")
        c_since, t_since2 = c.mark(), target.mark()
        self.hang_up(c, c_since)
        self.closed(target, t_since2, 5)
        heard = check_tone(c.new_recording(crec), target_hz, "caller hears the transfer target")
        rec = self.edge.call_record(did)
        check(rec["status"] == "completed" and len(rec["hops"]) >= 2,
              f"call record: status {rec['status']}, {len(rec['hops'])} hops (want the transfer as a hop)")
        return f"REFER 202; the target answered, the agent's leg ended; caller hears {heard}"

    def s_transfer_to_number(self):
        # The number's outbound trunk is a baresip (127.0.0.7) whose AOR user is the target number.
        return self._refer(self.did["transfer"], f"sip:{TRANSFER_TARGET}@127.0.0.1:{self.edge.sip_port}",
                           self.trunk, TRUNK_HZ)

    def s_transfer_to_agent(self):
        return self._refer(self.did["bridge"], f"sip:{self.fallback_id}@127.0.0.1:{self.edge.sip_port}",
                           self.fallback, FALLBACK_HZ)


def sip_messages(trace, bodies=False):
    """(first line, CSeq method[, the whole text]) of each message of a baresip SIP trace (-s), whose
    messages each follow a "UDP|TCP src -> dst" line."""
    out = []
    for part in re.split(r"(?m)^(?:UDP|TCP|TLS) [\d.:\[\]]+ -> [\d.:\[\]]+\s*$", trace)[1:]:
        lines = part.strip().splitlines()
        cseq = next((l.split()[-1] for l in lines if l.lower().startswith("cseq:")), "")
        first = lines[0].strip() if lines else ""
        out.append((first, cseq, part) if bodies else (first, cseq))
    return out


def refer_status(trace):
    """Status code of the first response to a REFER in a baresip SIP trace, or None."""
    for first, method in sip_messages(trace):
        if method == "REFER" and first.startswith("SIP/2.0 "):
            return int(first.split()[1])
    return None


class Skip(Exception):
    pass


# name, method, xfail reason (None: must pass)
SCENARIOS = [
    ("bridge_audio", "s_bridge_audio", None),
    ("fallback_no_answer", "s_fallback_no_answer", None),
    ("fallback_reject", "s_fallback_reject", None),
    ("fallback_unreachable", "s_fallback_unreachable", None),
    ("early_media_then_alaw_fallback", "s_early_media_then_alaw_fallback", None),
    ("voicemail_dtmf", "s_voicemail_dtmf", None),
    ("hold_resume", "s_hold_resume", None),
    ("tcp_only", "s_tcp_only", None),
    ("tls_agent", "s_tls_agent", None),
    ("srtp_tls_both", "s_srtp_tls_both", None),
    ("srtp_carrier_plain_agent", "s_srtp_carrier_plain_agent", None),
    ("plain_carrier_srtp_agent", "s_plain_carrier_srtp_agent", None),
    ("transfer_to_number", "s_transfer_to_number", None),
    ("transfer_to_agent", "s_transfer_to_agent", None),
]


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("binary", nargs="?", default=f"{root}/target/debug/oneinbox-edge")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, recordings)")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        print(f"edge binary not found at {args.binary} (cargo build first)")
        return 1
    if not shutil.which("baresip") or not os.path.exists(f"{MODULES}/aufile.so"):
        print("baresip not installed (apt-get install -y baresip)")
        return 1

    def on_alarm(*_):
        raise SuiteTimeout(f"the interop suite ran past {SUITE_TIMEOUT_S} s")
    signal.signal(signal.SIGALRM, on_alarm)
    def on_term(*_):
        raise SuiteTimeout("terminated (SIGTERM)")
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(SUITE_TIMEOUT_S)

    work = tempfile.mkdtemp(prefix="edge-interop.")
    started = time.monotonic()
    passed = failed = xfailed = skipped = 0
    try:
        try:
            suite = Suite(args.binary, work)
        except Failed as err:
            print(f"FAIL  set-up: {err}")
            for log in sorted(glob.glob(f"{work}/*/*.log")):
                print(f"   {log}:\n{tail(log)}")
            return 1
        only = set(filter(None, args.only.split(",")))
        for name, method, xfail in SCENARIOS:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            try:
                detail = getattr(suite, method)()
                took = time.monotonic() - t0
                if xfail:
                    print(f"XPASS {name} ({took:.1f} s): marked expected-to-fail ({xfail}) but passed: "
                          f"remove the mark")
                    failed += 1
                else:
                    print(f"ok    {name} ({took:.1f} s): {detail}")
                    passed += 1
            except Skip as why:
                print(f"SKIP  {name}: {why}")
                skipped += 1
            except Exception as err:  # Failed, or a bug of this runner: the scenario fails, the suite goes on
                took = time.monotonic() - t0
                if not isinstance(err, Failed):
                    err = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
                if xfail and isinstance(err, Symptom):
                    print(f"XFAIL {name} ({took:.1f} s): {err}\n      known edge bug: {xfail}")
                    xfailed += 1
                else:
                    print(f"FAIL  {name} ({took:.1f} s): {err}")
                    failed += 1
                    for log in sorted(glob.glob(f"{work}/*/*.log")):
                        print(f"   {log}:\n{tail(log, 8)}")
                    args.keep = True
            # Whatever happened, no call is left up for the next scenario.
            for ua in [suite.carrier, suite.agent, suite.fallback, suite.ringer, suite.trunk, suite.alaw] + \
                      (list(suite.tcp[1:]) if suite.tcp else []) + (list(suite.srtp[1:]) if suite.srtp else []):
                try:
                    ua.cmd("hangup", timeout=2)
                except Exception:
                    pass
            time.sleep(0.3)
        for edge in [suite.edge] + [x[0] for x in (suite.tcp, suite.tls, suite.srtp) if x]:
            if edge.proc.poll() is not None:
                print(f"FAIL  the edge exited during the runs:\n{tail(edge.dir + '/edge.log')}")
                failed += 1
    except SuiteTimeout as why:
        print(f"FAIL  {why}")
        failed += 1
        args.keep = True
    except Failed as err:
        print(f"FAIL  {err}")
        failed += 1
        args.keep = True
    except Exception:
        traceback.print_exc()
        failed += 1
        args.keep = True
    finally:
        signal.alarm(0)
        kill_all()
    print(f"interop: {passed} passed, {failed} failed, {xfailed} expected failures, {skipped} skipped "
          f"in {time.monotonic() - started:.0f} s" + (f"; logs and recordings in {work}" if args.keep else ""))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
