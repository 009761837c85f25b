//! Everything the pipeline needs that does not change while the daemon runs: the config, the
//! collection definitions, the registry and the reply templates, plus what is derived from them
//! once (our addresses, our Message-ID domain, the loop marker).

use super::Verdict;
use crate::auth::{DkimVerifier, Require};
use crate::collection::{Collections, Registry, Window};
use crate::config::Config;
use crate::mail::{self, ClassifyContext};
use crate::reply::{self, OrgRef, ReplyContext, Templates};
use chrono::{DateTime, Utc};

pub struct Env {
    pub config: Config,
    pub collections: Collections,
    pub registry: Registry,
    pub templates: Templates,
    our_addresses: Vec<String>,
    domain: String,
    /// Our own DKIM check, when `[auth] verify_dkim` asks for it (see [`Env::with_dkim`]).
    dkim: Option<DkimVerifier>,
}

impl Env {
    pub fn new(
        config: Config,
        collections: Collections,
        registry: Registry,
        templates: Templates,
    ) -> Env {
        let from = config.outbound.from.to_ascii_lowercase();
        let domain = from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        Env {
            our_addresses: vec![from],
            domain,
            config,
            collections,
            registry,
            templates,
            dkim: None,
        }
    }

    /// The environment with our own DKIM check (`[auth] verify_dkim`), its DNS as `[auth] dns`
    /// says. Fails when that resolver cannot be set up: a configuration problem.
    pub fn with_dkim(mut self) -> Result<Env, crate::auth::DkimError> {
        if self.config.auth.verify_dkim {
            self.dkim = Some(DkimVerifier::new(&self.config.auth.dns)?);
        }
        Ok(self)
    }

    /// The domain of our Message-IDs: the From address's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The `X-Loop` value our mail carries: our own address (RFC 3834 §5 suggests a header that
    /// names the responder).
    pub fn loop_marker(&self) -> &str {
        &self.our_addresses[0]
    }

    /// What `classify` needs, for a message whose sender was (or was not) `verified`.
    pub fn classify_context(&self, verified: bool) -> ClassifyContext<'_> {
        let c = &self.config.classify;
        ClassifyContext {
            registry: &self.registry,
            our_addresses: &self.our_addresses,
            message_id_domain: &self.domain,
            loop_marker: self.loop_marker(),
            technical_keywords: &self.config.routing.technical_keywords,
            content_keywords: &self.config.routing.content_keywords,
            automatic_subjects: &c.automatic_subjects,
            bounce_subjects: &c.bounce_subjects,
            automatic_senders: &c.automatic_senders,
            require_verified: self.require_verified(),
            verified,
        }
    }

    /// `[auth] require = "aligned"`: returns need a verified sender (SPEC §4a).
    pub fn require_verified(&self) -> bool {
        self.config.auth.require == Require::Aligned
    }

    /// The verdict on a message from `sender` (one mailbox, lower-cased), SPEC §4a. A DNS
    /// failure during our own DKIM check leaves it unverified for now (held, with the reason
    /// saying so): the team can release it, and the sender is not answered on a guess.
    pub fn verify(&self, raw: &[u8], sender: &str) -> Verdict {
        let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let v = crate::auth::verify_message(raw, domain, &self.config.auth, self.dkim.as_ref());
        let detail = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        Verdict {
            verified: v.verified,
            reason: v.reason,
            evidence: v.evidence,
            replay_key: v.replay_key,
            detail,
        }
    }

    pub fn reply_context(&self, message_id: String, now: DateTime<Utc>) -> ReplyContext {
        ReplyContext {
            from_address: self.config.outbound.from.clone(),
            from_name: self.config.outbound.from_name.clone(),
            our_domain: self.domain.clone(),
            loop_marker: self.loop_marker().to_string(),
            message_id,
            date: now,
        }
    }

    /// The period a message arriving at `at` most likely concerns: the latest one whose window
    /// (opens … closes) contains it. Used to show held messages and questions in `status`.
    pub fn period_open_at(&self, at: DateTime<Utc>) -> Option<String> {
        self.collections
            .iter()
            .flat_map(|d| d.periods.iter())
            .filter(|p| matches!(p.window(at), Window::OnTime | Window::Late))
            .max_by_key(|p| p.id)
            .map(|p| p.id.to_string())
    }

    pub fn org_ref(&self, code: &str) -> OrgRef {
        match self.registry.get(code) {
            Some(o) => OrgRef::from(o),
            None => OrgRef { code: code.to_string(), name: code.to_string() },
        }
    }

    pub fn subject_problem(&self, p: &mail::SubjectProblem) -> reply::SubjectProblem {
        match p {
            mail::SubjectProblem::NoIapt => reply::SubjectProblem::NoIapt,
            mail::SubjectProblem::NoOrganisation => reply::SubjectProblem::NoOrganisation,
            mail::SubjectProblem::Ambiguous(codes) => {
                reply::SubjectProblem::Ambiguous(codes.iter().map(|c| self.org_ref(c)).collect())
            }
        }
    }

    pub fn route(&self, r: mail::Route) -> reply::Route {
        match r {
            mail::Route::Technical => reply::Route::Technical,
            mail::Route::Content => reply::Route::Content,
        }
    }

    /// (name, address) of the team that answers a route.
    pub fn team(&self, route: reply::Route) -> (String, String) {
        let r = &self.config.routing;
        match route {
            reply::Route::Technical => {
                (r.data_collection_team_name.clone(), r.data_collection_team.clone())
            }
            reply::Route::Content => (r.content_team_name.clone(), r.content_team.clone()),
        }
    }
}
