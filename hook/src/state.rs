//! The OCI state document a runtime writes on the hook's stdin.
//!
//! Read leniently on purpose: runtimes differ (runc sends status
//! `creating` and no pid at poststop, crun sends `created` and `pid: 0`,
//! podman's own poststop carries only some annotations), and oci-spec's
//! strict `State` rejects some of them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct State {
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// Host pid of the container's init; absent or 0 once it is gone.
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl State {
    /// Read the state from stdin (bounded: a state document is small).
    pub fn from_stdin() -> Result<State> {
        let mut buf = Vec::with_capacity(4096);
        std::io::stdin()
            .take(1 << 20)
            .read_to_end(&mut buf)
            .context("read the container state from stdin")?;
        Self::parse(&buf)
    }

    pub fn parse(buf: &[u8]) -> Result<State> {
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            bail!("no container state on stdin: the runtime passes it; to run by hand, pipe the state JSON in (see `wirehook hook --help`)");
        }
        let st: State = serde_json::from_slice(buf)
            .context("the container state on stdin is not valid OCI state JSON")?;
        wirehook_shared::store::validate_id(&st.id)?;
        Ok(st)
    }

    /// The pid if the runtime sent a live one.
    pub fn live_pid(&self) -> Option<i32> {
        self.pid.filter(|p| *p > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: &[u8] = br#"{"ociVersion":"1.0.2-dev","id":"abc","status":"creating","pid":42,"bundle":"/b","annotations":{"io.wirehook.network":"bridge"}}"#;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// The state document from the runtime, cut short, with a byte
        /// changed, or random: no panic, and the error (as printed) is one line.
        #[test]
        fn state_documents(
            at in 0..=SEED.len(),
            b in any::<u8>(),
            cut in any::<bool>(),
            random in proptest::collection::vec(any::<u8>(), 0..160),
            use_random in any::<bool>(),
        ) {
            let mut doc = SEED.to_vec();
            if use_random {
                doc = random;
            } else if cut {
                doc.truncate(at);
            } else if at < doc.len() {
                doc[at] = b;
            }
            if let Err(e) = State::parse(&doc) {
                let line = format!("{e:#}");
                prop_assert!(!line.contains('\n'), "{line:?}");
            }
        }
    }

    #[test]
    fn runtimes_differ_and_all_parse() {
        let runc_create = br#"{"ociVersion":"1.0.2-dev","id":"a","status":"creating","pid":42,"bundle":"/b","annotations":{"io.wirehook.network":"bridge"}}"#;
        let s = State::parse(runc_create).unwrap();
        assert_eq!(s.live_pid(), Some(42));
        let runc_stop = br#"{"ociVersion":"1.0.2-dev","id":"a","status":"stopped","bundle":"/b"}"#;
        assert_eq!(State::parse(runc_stop).unwrap().live_pid(), None);
        let crun_stop = br#"{"ociVersion":"1.0.0","id":"a","status":"stopped","pid":0,"bundle":"/b","annotations":{}}"#;
        assert_eq!(State::parse(crun_stop).unwrap().live_pid(), None);
        let crun_starting =
            br#"{"ociVersion":"1.0.0","id":"a","status":"starting","pid":7,"bundle":"/b"}"#;
        assert_eq!(State::parse(crun_starting).unwrap().status, "starting");
    }

    #[test]
    fn bad_ids_and_empty_input() {
        assert!(State::parse(br#"{"id":"../x"}"#).is_err());
        let e = State::parse(b"  ").unwrap_err().to_string();
        assert!(e.contains("no container state"), "{e}");
    }
}
