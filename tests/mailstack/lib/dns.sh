# dns.sh — the stack's DNS server: dnsmasq (Debian dnsmasq-base: the program without the
# system service) on 127.0.0.1:DNS_PORT, UDP and TCP, with no upstream. It answers for the
# test domains only: the DKIM keys lib/dkim.sh makes (TXT SELECTOR._domainkey.DOMAIN); any
# other name under .test is NXDOMAIN, and nothing is ever forwarded (no DNS leaves the host).
# Sourced by ../mailstack; owns DIR/dns.

write_dns_conf() {
    mkdir -p "$DIR/dns"
    {
        echo "# Written by tests/mailstack/mailstack for the stack in $DIR."
        echo "port=$DNS_PORT"
        echo "listen-address=127.0.0.1"
        echo "bind-interfaces"
        echo "no-resolv"
        echo "no-hosts"
        echo "no-poll"
        # Ours alone: unknown names under .test get NXDOMAIN (a missing key is a permanent
        # failure to a verifier), never a forward.
        echo "local=/test/"
        echo "pid-file=$RUN_DIR/dnsmasq.pid"
        echo "log-facility=$DIR/dns.log"
        echo "user=nobody"
        echo "group=nogroup"
        dkim_txt_records
    } >"$DIR/dns/dnsmasq.conf"
    : >>"$DIR/dns.log"
    chown nobody:nogroup "$DIR/dns.log"
}

dns_running() {
    pid_alive "$RUN_DIR/dnsmasq.pid"
}

dns_start() {
    rm -f "$RUN_DIR/dnsmasq.pid"
    # dnsmasq daemonises once its sockets are bound.
    dnsmasq --conf-file="$DIR/dns/dnsmasq.conf" </dev/null >"$DIR/dns.start.log" 2>&1 9>&-
}

dns_stop() {
    dns_running || return 0
    local pid
    pid=$(head -n1 "$RUN_DIR/dnsmasq.pid")
    kill "$pid" 2>/dev/null || true
    wait_pid_gone "$pid"
}
