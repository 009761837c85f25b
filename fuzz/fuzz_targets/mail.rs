//! Bytes → `Inbound::parse` → `classify` against the real registry and routing keywords.
//! Parsing never fails and classifying never panics (SPEC §6), whatever the bytes.
#![no_main]

#[path = "shared.rs"]
#[allow(dead_code)]
mod shared;

use iapt_intake::mail::{classify, ClassifyContext, Inbound};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Ctx {
    real: shared::Real,
    ours: Vec<String>,
    domain: String,
}

static CTX: OnceLock<Ctx> = OnceLock::new();

fn ctx() -> &'static Ctx {
    CTX.get_or_init(|| {
        // libFuzzer's panic hook aborts at once, before `Inbound::parse` can catch a panic
        // inside mail-parser (its debug assertions, which it handles in release). Restoring
        // the default hook lets that guard work; a panic it does not catch still aborts at the
        // fuzz target's boundary and is reported as a crash.
        drop(std::panic::take_hook());
        let real = shared::load();
        let from = real.config.outbound.from.to_ascii_lowercase();
        let domain = from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        Ctx { real, ours: vec![from], domain }
    })
}

fuzz_target!(|data: &[u8]| {
    let c = ctx();
    let inbound = Inbound::parse(data);
    let classify_config = &c.real.config.classify;
    let context = ClassifyContext {
        registry: &c.real.registry,
        our_addresses: &c.ours,
        message_id_domain: &c.domain,
        loop_marker: &c.ours[0],
        technical_keywords: &c.real.config.routing.technical_keywords,
        content_keywords: &c.real.config.routing.content_keywords,
        automatic_subjects: &classify_config.automatic_subjects,
        bounce_subjects: &classify_config.bounce_subjects,
        automatic_senders: &classify_config.automatic_senders,
        require_verified: false,
        verified: false,
    };
    let _ = classify(&inbound, &context);
});
