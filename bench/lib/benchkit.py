"""Shared pieces of the performance bench (bench/run): the mail stack's settings, IMAP and SMTP
connections made the same way for every contender, loading messages through Postfix, reloading
the intake mailbox between contenders, and waiting for replies in the providers' mailboxes.

Python standard library only. Owns nothing outside the bench's work directory and the mail
stack it is pointed at; never touches the project's store or source.
"""

import csv
import glob
import imaplib
import json
import math
import os
import re
import smtplib
import ssl
import threading
import time

LOAD_DOMAIN = "load.nhs.test"
SOURCE_FOLDER = "BenchSource"
PROCESSED_FOLDER = "Processed"


def stack_env(path=None):
    """The KEY=value lines `tests/mailstack/mailstack env DIR` wrote to a file, as a dict."""
    path = path or os.environ["BENCH_STACK_ENV"]
    env = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key] = value
    return env


def tls_mode():
    """How every contender protects its IMAP and SMTP connections: starttls (default) or none."""
    mode = os.environ.get("BENCH_TLS", "starttls")
    if mode not in ("starttls", "none"):
        raise SystemExit(f"BENCH_TLS must be starttls or none, not {mode!r}")
    return mode


def tls_context(env):
    return ssl.create_default_context(cafile=env["MAILSTACK_CA"])


def imap_login(env, user, password):
    """One IMAP connection, logged in, with the bench's TLS mode."""
    conn = imaplib.IMAP4(env["MAILSTACK_HOST"], int(env["MAILSTACK_IMAP_PORT"]))
    if tls_mode() == "starttls":
        conn.starttls(ssl_context=tls_context(env))
    conn.login(user, password)
    return conn


def intake_login(env):
    return imap_login(env, env["MAILSTACK_INTAKE_USER"], env["MAILSTACK_INTAKE_PASSWORD"])


def smtp_connect(env):
    """One SMTP connection to the stack's Postfix (no login: the test domains are local)."""
    conn = smtplib.SMTP(env["MAILSTACK_HOST"], int(env["MAILSTACK_SMTP_PORT"]), timeout=60)
    conn.ehlo("bench.load.nhs.test")
    if tls_mode() == "starttls":
        conn.starttls(context=tls_context(env))
        conn.ehlo("bench.load.nhs.test")
    return conn


def check(result, what):
    typ, data = result
    if typ != "OK":
        raise RuntimeError(f"IMAP {what}: {typ} {data!r}")
    return data


def uids(conn):
    data = check(conn.uid("SEARCH", None, "ALL"), "UID SEARCH")
    return data[0].split() if data and data[0] else []


# --- the submissions -----------------------------------------------------------------------

def registry_senders(registry_csv):
    """Each organisation's submitter addresses, in the registry's order (the order the message
    generator takes organisations in)."""
    with open(registry_csv, newline="") as f:
        return [row["submitters"].split(";") for row in csv.DictReader(f)]


def sender_for(i, senders):
    """The provider account that sends submission i: the generator gives message i to
    organisation i mod n; its submitters take turns."""
    choices = senders[i % len(senders)]
    return choices[(i // len(senders)) % len(choices)]


def load_messages(eml_dir, registry_csv, count):
    """(index, sender, bytes) for the first `count` generated messages, the generator's
    placeholder sender `analystI@load.nhs.test` replaced in the header by the real account."""
    senders = registry_senders(registry_csv)
    files = sorted(glob.glob(os.path.join(eml_dir, "new", "burst.*")))[:count]
    if len(files) < count:
        raise SystemExit(f"only {len(files)} generated messages in {eml_dir}, {count} wanted")
    out = []
    for path in files:
        i = int(path.rsplit(".", 1)[1])
        raw = open(path, "rb").read()
        head, sep, body = raw.partition(b"\r\n\r\n")
        sender = sender_for(i, senders)
        head = head.replace(f"analyst{i}@{LOAD_DOMAIN}".encode(), sender.encode())
        out.append((i, sender, head + sep + body))
    return out


def open_provider_mailboxes(env, registry_csv, timeout=120):
    """Deliver one short message to every provider account in the registry and wait until all
    have arrived: Dovecot creates a mailbox (Maildir and index files) on its first delivery, and
    that one-off cost must not fall on whichever contender happens to answer first."""
    accounts = sorted({a for row in registry_senders(registry_csv) for a in row if a})
    before = set(reply_names(env))
    conn = smtp_connect(env)
    for n, account in enumerate(accounts):
        raw = (
            f"From: <bench@{LOAD_DOMAIN}>\r\nTo: <{account}>\r\n"
            f"Subject: mailbox opened for the bench\r\nMessage-ID: <open.{n}.{time.time()}@bench>\r\n"
            f"\r\nThis mailbox receives the bench's replies.\r\n"
        ).encode()
        conn.sendmail(f"bench@{LOAD_DOMAIN}", [account], raw)
    conn.quit()
    got, _, _ = wait_replies(env, before, len(accounts), timeout)
    if got < len(accounts):
        raise SystemExit(f"only {got} of {len(accounts)} provider mailboxes opened")
    return len(accounts)


def message_id(raw):
    m = re.search(rb"^Message-ID:\s*(<[^>]+>)", raw, re.I | re.M)
    return m.group(1).decode() if m else None


def inject(env, messages, connections=4):
    """Send every message to the intake mailbox through Postfix over `connections` SMTP
    connections at once; returns {index: acceptance time (epoch seconds)}."""
    accepted = {}
    lock = threading.Lock()
    rcpt = env["MAILSTACK_INTAKE_USER"]
    errors = []

    def worker(part):
        try:
            conn = smtp_connect(env)
            for i, sender, raw in part:
                conn.sendmail(sender, [rcpt], raw)
                t = time.time()
                with lock:
                    accepted[i] = t
            conn.quit()
        except Exception as e:  # reported below: a failed load makes every figure meaningless
            errors.append(e)

    parts = [messages[k::connections] for k in range(connections)]
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts if p]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"loading through Postfix failed: {errors[0]!r}")
    return accepted


# --- the intake mailbox between contenders ---------------------------------------------------

def ensure_folder(conn, name):
    conn.create(name)  # NO when it exists, which is fine


def empty_folder(conn, name):
    check(conn.select(name), f"SELECT {name}")
    found = uids(conn)
    if found:
        check(conn.uid("STORE", b",".join(found), "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        check(conn.expunge(), "EXPUNGE")
    conn.close()


def count_in(conn, name):
    data = check(conn.status(name, "(MESSAGES)"), f"STATUS {name}")
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def wait_for_count(env, name, want, timeout):
    """Wait until folder `name` of the intake holds `want` messages (Postfix still delivering)."""
    conn = intake_login(env)
    deadline = time.time() + timeout
    try:
        while True:
            have = count_in(conn, name)
            if have >= want:
                return have
            if time.time() > deadline:
                raise RuntimeError(f"{name} holds {have} of {want} messages after {timeout} s")
            time.sleep(0.05)
    finally:
        conn.logout()


def keep_source(env):
    """Copy what was loaded into INBOX to a folder no contender touches, for reloading."""
    conn = intake_login(env)
    ensure_folder(conn, SOURCE_FOLDER)
    ensure_folder(conn, PROCESSED_FOLDER)
    empty_folder(conn, SOURCE_FOLDER)
    check(conn.select("INBOX"), "SELECT INBOX")
    check(conn.uid("COPY", "1:*", SOURCE_FOLDER), "UID COPY")
    conn.close()
    conn.logout()


def reload_inbox(env):
    """Put the same messages back: empty INBOX and Processed, copy the kept ones into INBOX
    (COPY keeps the bytes and INTERNALDATE)."""
    conn = intake_login(env)
    ensure_folder(conn, PROCESSED_FOLDER)
    empty_folder(conn, "INBOX")
    empty_folder(conn, PROCESSED_FOLDER)
    check(conn.select(SOURCE_FOLDER), f"SELECT {SOURCE_FOLDER}")
    check(conn.uid("COPY", "1:*", "INBOX"), "UID COPY")
    conn.close()
    n = count_in(conn, "INBOX")
    conn.logout()
    return n


# --- replies in the providers' mailboxes -----------------------------------------------------

def provider_maildirs(env):
    root = os.path.join(env["MAILSTACK_DIR"], "mail", LOAD_DOMAIN)
    return [os.path.join(root, d, "Maildir") for d in sorted(os.listdir(root))] if os.path.isdir(
        root
    ) else []


def reply_names(env, cache=None):
    """{message base name: file path} of every message in the providers' mailboxes, read on disk
    (the stack is local). Names only, and with `cache` (a dict kept between polls) a folder is
    listed again only when its mtime says it changed, or changed less than a second ago (mtime
    is coarse): a poll must not stat or list the thousands of replies earlier trials left behind,
    or the harness itself eats a growing share of the machine it measures."""
    found = {}
    now = time.time()
    for md in provider_maildirs(env):
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            try:
                mtime = os.stat(d).st_mtime_ns
            except FileNotFoundError:
                continue
            kept = cache.get(d) if cache is not None else None
            if kept is None or kept[0] != mtime or now - mtime / 1e9 < 1.0:
                names = {}
                try:
                    with os.scandir(d) as entries:
                        for e in entries:
                            names[e.name.split(":", 1)[0]] = e.path
                except FileNotFoundError:
                    continue
                kept = (mtime, names)
                if cache is not None:
                    cache[d] = kept
            found.update(kept[1])
    return found


def delivered_at(path):
    """When Dovecot's LMTP delivered a message: its Maildir file's mtime. Nothing reads the
    providers' mail during a run, so it is still where it was listed; should a client have
    moved it to cur/ (renamed with flags), it is found there by its base name."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        pass
    maildir = os.path.dirname(os.path.dirname(path))
    base = os.path.basename(path).split(":", 1)[0]
    for sub in ("new", "cur"):
        with os.scandir(os.path.join(maildir, sub)) as entries:
            for e in entries:
                if e.name.split(":", 1)[0] == base:
                    return e.stat().st_mtime
    return None


def wait_replies(env, before, want, timeout, on_poll=None):
    """Wait until `want` replies not in `before` have arrived; returns (count, last delivery
    time, first delivery time). Polls names only; the new replies are stat'ed once at the end."""
    deadline = time.time() + timeout
    cache = {}
    while True:
        new = [path for name, path in reply_names(env, cache).items() if name not in before]
        if len(new) >= want or time.time() > deadline:
            times = [t for t in map(delivered_at, new) if t is not None]
            return len(new), (max(times) if times else None), (min(times) if times else None)
        if on_poll:
            on_poll()
        time.sleep(0.1)  # the times come from the files, so polling often buys nothing


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = math.ceil(p / 100.0 * len(s))
    return s[max(0, min(len(s) - 1, rank - 1))]


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)
