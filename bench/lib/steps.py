"""The steps of bench/run that talk to the mail stack, one subcommand each:

  load      open every provider's mailbox with one message, send the generated submissions to
            the intake mailbox through Postfix, wait until Dovecot holds them all, keep a copy
            for reloading
  reload    put the same messages back into the intake INBOX for the next contender
  median    each contender's median trial as its figure (name.json), every trial kept
  snapshot  note which messages the providers' mailboxes hold now
  wait      wait for N new replies in the providers' mailboxes; time from a given start to the
            last delivery
  latency   steady injection, one message at a time, each reply detected by NOOP polling
  summary   every figure of the run as one JSON file, and the table printed at the end

Reads the stack's settings from the file named by BENCH_STACK_ENV.
"""

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit as bk  # noqa: E402


def cmd_load(a):
    env = bk.stack_env()
    messages = bk.load_messages(a.eml, a.registry, a.count)
    conn = bk.intake_login(env)
    bk.ensure_folder(conn, "INBOX")
    bk.empty_folder(conn, "INBOX")
    conn.logout()
    opened = bk.open_provider_mailboxes(env, a.registry)
    print(f"opened {opened} provider mailboxes (one message each)")
    start = time.time()
    accepted = bk.inject(env, messages, a.connections)
    smtp_done = time.time()
    bk.wait_for_count(env, "INBOX", a.count, timeout=120 + a.count)
    stored = time.time()
    bk.keep_source(env)
    figures = {
        "messages": len(accepted),
        "smtp_connections": a.connections,
        "smtp_seconds": round(smtp_done - start, 3),
        "smtp_per_second": round(len(accepted) / (smtp_done - start), 1),
        "in_mailbox_seconds": round(stored - start, 3),
    }
    bk.write_json(a.out, figures)
    print(
        f"loaded {len(accepted)} submissions through Postfix in {stored - start:.1f} s "
        f"(SMTP acceptance {figures['smtp_per_second']}/s over {a.connections} connections)"
    )


def cmd_reload(a):
    n = bk.reload_inbox(bk.stack_env())
    if n != a.count:
        raise SystemExit(f"reload put {n} messages in INBOX, expected {a.count}")


def speed(fig):
    return fig.get("per_second") if fig.get("complete") else 0.0


def cmd_median(a):
    """daemon.json, baseline.json and floor.json from trials name.1.json ... name.T.json (and
    the same with -split from the split placement's trials): the trial with the median messages
    per second (the lower middle one for an even count), with every trial's figure listed; the
    daemon's peak RSS is the highest of any trial."""
    names = [
        (base + sfx, count)
        for base in ("daemon", "baseline", "floor")
        for sfx, count in (("", a.trials), ("-split", a.split_trials))
    ]
    peaks = []
    for name, count in names:
        trials = []
        for t in range(1, count + 1):
            try:
                trials.append(bk.read_json(os.path.join(a.work, f"{name}.{t}.json")))
            except FileNotFoundError:
                pass
            if name.startswith("daemon"):
                try:
                    text = open(os.path.join(a.work, f"{name}.{t}.rss_kb")).read().strip()
                    peaks.append(int(text))
                except (FileNotFoundError, ValueError):
                    pass
        if trials:
            ordered = sorted(trials, key=speed)
            chosen = dict(ordered[(len(ordered) - 1) // 2])
            chosen["trials_per_second"] = [speed(f) for f in trials]
            bk.write_json(os.path.join(a.work, f"{name}.json"), chosen)
    if peaks:
        with open(os.path.join(a.work, "daemon.rss_kb"), "w") as f:
            f.write(f"{max(peaks)}\n")


def cmd_snapshot(a):
    bk.write_json(a.out, sorted(bk.reply_names(bk.stack_env())))


def cmd_wait(a):
    env = bk.stack_env()
    before = set(bk.read_json(a.before))
    count, last, first = bk.wait_replies(env, before, a.want, a.timeout)
    done = time.time()
    fig = {"messages": a.want, "replies": count, "complete": count >= a.want}
    if last is not None:
        secs = last - a.start
        fig.update(
            seconds=round(secs, 3),
            per_second=round(count / secs, 2) if secs > 0 else None,
            first_reply_after=round(first - a.start, 3),
        )
    fig["waited_seconds"] = round(done - a.start, 3)
    if a.cpu:
        try:
            # /usr/bin/time's last line: user and system seconds.
            user, system = open(a.cpu).read().split()[-2:]
            fig["cpu_seconds"] = round(float(user) + float(system), 2)
        except (FileNotFoundError, ValueError):
            pass
    if a.exited:
        fig["process_seconds"] = round(a.exited - a.start, 3)
    bk.write_json(a.out, fig)
    state = "" if fig["complete"] else f"  INCOMPLETE: {count} of {a.want} replies"
    print(
        f"{a.name}: {count} replies, last delivered {fig.get('seconds', '?')} s after the start "
        f"-> {fig.get('per_second', '?')} messages/s{state}"
    )


class Watcher(threading.Thread):
    """Polls provider mailboxes with NOOP for the replies still owed. IDLE would be simpler, but
    Dovecot holds every IDLE notification back by a fixed 500 ms, which would be measured too."""

    def __init__(self, env):
        super().__init__(daemon=True)
        self.env = env
        self.lock = threading.Lock()
        self.conns = {}  # account -> [imap connection, messages seen]
        self.pending = {}  # message-id -> account
        self.seen = {}  # message-id -> detection time
        self.stop = False

    def expect(self, account, msgid):
        """Called before sending: open (or reuse) a connection to the sender's mailbox."""
        with self.lock:
            have = account in self.conns
        if not have:
            conn = bk.imap_login(self.env, account, self.env["MAILSTACK_LOAD_PASSWORD"])
            exists = int(bk.check(conn.select("INBOX"), "SELECT")[0])
            with self.lock:
                self.conns[account] = [conn, exists]
        with self.lock:
            self.pending[msgid] = account

    def run(self):
        while not self.stop:
            with self.lock:
                accounts = list(self.conns.items())
            for account, slot in accounts:
                self.poll(account, slot)
            time.sleep(0.01)

    def poll(self, account, slot):
        conn, known = slot
        conn.noop()
        t = time.time()
        exists = conn.response("EXISTS")[1]
        count = max([int(x) for x in exists if x] or [known])
        if count > known:
            data = bk.check(
                conn.fetch(f"{known + 1}:{count}", "(BODY.PEEK[HEADER.FIELDS (IN-REPLY-TO)])"),
                "FETCH",
            )
            for item in data:
                if isinstance(item, tuple):
                    text = item[1].decode("latin-1")
                    ref = text.partition(":")[2].strip()
                    with self.lock:
                        if ref in self.pending:
                            self.seen[ref] = t
                            del self.pending[ref]
            slot[1] = count
        with self.lock:
            if account not in self.pending.values():
                del self.conns[account]
                try:
                    conn.logout()
                except Exception:  # closing a poller's connection cannot change a figure
                    pass


def cmd_latency(a):
    env = bk.stack_env()
    messages = bk.load_messages(a.eml, a.registry, a.count)
    watcher = Watcher(env)
    watcher.start()
    smtp = bk.smtp_connect(env)
    rcpt = env["MAILSTACK_INTAKE_USER"]
    accepted = {}
    interval = 1.0 / a.rate
    next_at = time.time()
    for i, sender, raw in messages:
        msgid = bk.message_id(raw)
        watcher.expect(sender, msgid)
        now = time.time()
        if next_at > now:
            time.sleep(next_at - now)
        smtp.sendmail(sender, [rcpt], raw)
        accepted[msgid] = time.time()
        next_at += interval
    smtp.quit()
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        with watcher.lock:
            if not watcher.pending:
                break
        time.sleep(0.05)
    watcher.stop = True
    with watcher.lock:
        lat = [watcher.seen[m] - accepted[m] for m in watcher.seen if m in accepted]
        missing = len(watcher.pending)
    fig = {"messages": len(messages), "rate_per_second": a.rate, "replies": len(lat),
           "missing": missing}
    if lat:
        fig.update(
            p50_seconds=round(bk.percentile(lat, 50), 3),
            p90_seconds=round(bk.percentile(lat, 90), 3),
            p99_seconds=round(bk.percentile(lat, 99), 3),
            max_seconds=round(max(lat), 3),
            min_seconds=round(min(lat), 3),
        )
    bk.write_json(a.out, fig)
    print(
        f"latency: {len(lat)} of {len(messages)} replies at {a.rate}/s, "
        f"p50 {fig.get('p50_seconds')} s, p99 {fig.get('p99_seconds')} s, max {fig.get('max_seconds')} s"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("load")
    s.add_argument("--eml", required=True)
    s.add_argument("--registry", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--connections", type=int, default=4)
    s.add_argument("--out", required=True)
    s = sub.add_parser("reload")
    s.add_argument("--count", type=int, required=True)
    s = sub.add_parser("median")
    s.add_argument("--work", required=True)
    s.add_argument("--trials", type=int, required=True)
    s.add_argument("--split-trials", type=int, default=0)
    s = sub.add_parser("snapshot")
    s.add_argument("--out", required=True)
    s = sub.add_parser("wait")
    s.add_argument("--name", required=True)
    s.add_argument("--before", required=True)
    s.add_argument("--want", type=int, required=True)
    s.add_argument("--start", type=float, required=True)
    s.add_argument("--exited", type=float)
    s.add_argument("--cpu", help="/usr/bin/time -f '%%U %%S' output of the contender")
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--out", required=True)
    s = sub.add_parser("latency")
    s.add_argument("--eml", required=True)
    s.add_argument("--registry", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=float, default=5.0)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    a = p.parse_args()
    if a.cmd == "summary":
        import summary

        summary.main(a.work, a.out)
    else:
        globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
