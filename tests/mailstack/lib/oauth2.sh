# oauth2.sh — XOAUTH2 / OAUTHBEARER for the stack: Dovecot's oauth2 passdb checks bearer tokens
# against an introspection URL, by default the stack's own endpoint (../oauth2-server) on a
# loopback port. MAILSTACK_OAUTH2_URL at the first start points Dovecot elsewhere instead.
# Sourced by ../mailstack; owns DIR/oauth2 and DIR/dovecot/oauth2.conf.ext.

OAUTH2_SERVER=$HERE/oauth2-server

# Decides OAUTH2_URL and makes the two fixed tokens; runs before write_dovecot_conf.
choose_oauth2() {
    OAUTH2_URL=${MAILSTACK_OAUTH2_URL:-}
    if [ -z "$OAUTH2_URL" ]; then
        if command -v python3 >/dev/null; then
            OAUTH2_URL=http://127.0.0.1:$OAUTH_PORT/introspect
        else
            say "python3 not found: XOAUTH2 is off (set MAILSTACK_OAUTH2_URL to use another endpoint)"
        fi
    fi
    OAUTH2_GOOD_TOKEN=""
    OAUTH2_EXPIRED_TOKEN=""
    oauth2_enabled || return 0
    OAUTH2_GOOD_TOKEN=tok-$(openssl rand -hex 16)
    OAUTH2_EXPIRED_TOKEN=tok-$(openssl rand -hex 16)
    local now
    now=$(date +%s)
    # The format oauth2-server reads (token -> username, exp); written here directly because
    # three Python start-ups cost a second on a loaded machine.
    cat >"$OAUTH_DIR/tokens.json" <<EOF
{
 "$OAUTH2_GOOD_TOKEN": {"username": "intake@example.nhs.test", "exp": $((now + 315360000))},
 "$OAUTH2_EXPIRED_TOKEN": {"username": "intake@example.nhs.test", "exp": $((now - 1))}
}
EOF
}

write_oauth2() {
    [ -n "$OAUTH2_URL" ] || return 0
    cat >"$DIR/dovecot/oauth2.conf.ext" <<EOF
# Written by tests/mailstack/mailstack: RFC 7662 introspection, token sent as a form field.
introspection_mode = post
introspection_url = $OAUTH2_URL
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
EOF
    chown root:dovecot "$DIR/dovecot/oauth2.conf.ext"
    chmod 640 "$DIR/dovecot/oauth2.conf.ext"
}

# True when the stack runs its own endpoint (not when MAILSTACK_OAUTH2_URL points elsewhere).
oauth2_enabled() {
    [ "$OAUTH2_URL" = "http://127.0.0.1:$OAUTH_PORT/introspect" ]
}

oauth2_running() {
    pid_alive "$OAUTH_DIR/pid"
}

oauth2_start() {
    rm -f "$OAUTH_DIR/pid"
    setsid python3 "$OAUTH2_SERVER" serve --port "$OAUTH_PORT" --tokens "$OAUTH_DIR/tokens.json" \
        --pidfile "$OAUTH_DIR/pid" </dev/null >>"$DIR/oauth2.log" 2>&1 9>&- &
    disown
}

oauth2_stop() {
    oauth2_running || return 0
    local pid
    pid=$(head -n1 "$OAUTH_DIR/pid")
    kill "$pid" 2>/dev/null || true
    wait_pid_gone "$pid"
    rm -f "$OAUTH_DIR/pid"
}
