//! The bytes that go over the wire to etcd's v3 JSON gateway, and back.
//!
//! The gateway maps each gRPC call to `POST /v3/<service>/<call>` with the
//! protobuf message as JSON: `bytes` fields (keys, values) are base64,
//! `int64` fields are JSON strings, fields at their default value (0, false,
//! empty) are left out, and enums travel by name. Streaming calls (watch,
//! lease keep-alive) answer with one `{"result": ...}` object per message,
//! each followed by a newline; errors come as `{"error": ...}`.
//!
//! Everything here is pure (no I/O) so it can be tested on fixed strings.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{Event, EventKind, Kv, Listing, WatchMsg};

/// Base64 of `data`, as the gateway wants `bytes` fields.
pub(crate) fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

/// The `range_end` that makes `[prefix, range_end)` cover every key starting
/// with `prefix`: the prefix with its last byte below 0xff incremented and
/// what follows dropped. An empty prefix (or one of only 0xff bytes) has no
/// such end; etcd spells "to the end of the keyspace" as `\0`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `key` and `range_end` of a request covering every key under `prefix`
/// (all keys when the prefix is empty: key `\0`, range_end `\0`).
fn prefix_range(prefix: &str) -> (String, String) {
    let key: &[u8] = if prefix.is_empty() {
        &[0]
    } else {
        prefix.as_bytes()
    };
    (b64(key), b64(&prefix_end(prefix.as_bytes())))
}

// ---------------------------------------------------------------- requests

/// `POST /v3/kv/range` for every key under `prefix`.
pub(crate) fn range_prefix(prefix: &str) -> Value {
    let (key, end) = prefix_range(prefix);
    json!({ "key": key, "range_end": end })
}

/// `POST /v3/kv/range` for exactly `key`.
pub(crate) fn range_key(key: &str) -> Value {
    json!({ "key": b64(key.as_bytes()) })
}

/// `POST /v3/kv/txn`: if no key of `puts` exists yet (create_revision 0),
/// put them all.
pub(crate) fn create_txn(puts: &[(&str, &[u8])]) -> Value {
    let compare: Vec<Value> = puts
        .iter()
        .map(|(k, _)| {
            json!({
                "key": b64(k.as_bytes()),
                "target": "CREATE",
                "result": "EQUAL",
                "create_revision": "0",
            })
        })
        .collect();
    let success: Vec<Value> = puts
        .iter()
        .map(|(k, v)| json!({ "request_put": { "key": b64(k.as_bytes()), "value": b64(v) } }))
        .collect();
    json!({ "compare": compare, "success": success })
}

/// `POST /v3/kv/txn` putting each pair on `lease` and deleting each of
/// `deletes` (unconditionally, in one revision).
pub(crate) fn write_txn(puts: &[(&str, &[u8])], lease: Option<i64>, deletes: &[&str]) -> Value {
    let mut success: Vec<Value> = puts
        .iter()
        .map(|(k, v)| json!({ "request_put": put(k, v, lease) }))
        .collect();
    success.extend(
        deletes
            .iter()
            .map(|k| json!({ "request_delete_range": { "key": b64(k.as_bytes()) } })),
    );
    json!({ "success": success })
}

/// `POST /v3/kv/put`.
pub(crate) fn put(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut req = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
    if let Some(id) = lease.filter(|id| *id != 0) {
        req["lease"] = Value::String(id.to_string());
    }
    req
}

/// `POST /v3/kv/txn` deleting each key (unconditionally, in one revision).
pub(crate) fn delete_txn(keys: &[&str]) -> Value {
    let success: Vec<Value> = keys
        .iter()
        .map(|k| json!({ "request_delete_range": { "key": b64(k.as_bytes()) } }))
        .collect();
    json!({ "success": success })
}

/// `POST /v3/kv/deleterange` for every key under `prefix`.
pub(crate) fn delete_prefix(prefix: &str) -> Value {
    let (key, end) = prefix_range(prefix);
    json!({ "key": key, "range_end": end })
}

/// `POST /v3/lease/grant`.
pub(crate) fn lease_grant(ttl_secs: i64) -> Value {
    json!({ "TTL": ttl_secs.to_string() })
}

/// `POST /v3/lease/keepalive` and `/v3/lease/revoke`.
pub(crate) fn lease_id(id: i64) -> Value {
    json!({ "ID": id.to_string() })
}

/// `POST /v3/kv/compaction`.
pub(crate) fn compaction(revision: i64) -> Value {
    json!({ "revision": revision.to_string() })
}

/// The first message on `POST /v3/watch`: watch every key under `prefix`
/// from `start_revision`, with progress notifications (so an idle watch
/// still hears from etcd now and then).
pub(crate) fn watch_create(prefix: &str, start_revision: i64) -> Value {
    let (key, end) = prefix_range(prefix);
    let mut req = json!({ "key": key, "range_end": end, "progress_notify": true });
    if start_revision > 0 {
        req["start_revision"] = Value::String(start_revision.to_string());
    }
    json!({ "create_request": req })
}

// --------------------------------------------------------------- responses

/// int64 fields: the gateway sends strings, but accept numbers too.
fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        S(String),
        N(i64),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not an integer: {s:?}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "de_i64")]
    revision: i64,
}

#[derive(Debug, Default, Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "de_i64")]
    create_revision: i64,
    #[serde(default, deserialize_with = "de_i64")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "de_i64")]
    lease: i64,
}

impl RawKv {
    fn decode(self) -> Result<Kv, String> {
        let key = B64
            .decode(&self.key)
            .map_err(|e| format!("key is not base64: {e}"))?;
        let key = String::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
        let value = B64
            .decode(&self.value)
            .map_err(|e| format!("value of {key} is not base64: {e}"))?;
        Ok(Kv {
            key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            lease: self.lease,
        })
    }
}

/// Text from the server for an error line: at most 200 characters, with
/// newlines and other control characters escaped (an error is one line).
fn excerpt(text: &str) -> String {
    text.trim()
        .chars()
        .take(200)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        let shown = excerpt(&String::from_utf8_lossy(&body[..body.len().min(200)]));
        format!("unexpected answer ({e}): {shown}")
    })
}

/// The message of an error answer, in either of the gateway's shapes:
/// `{"error": "text", "message": "text", "code": N}` (unary calls) or
/// `{"error": {"message": "text", "grpc_code": N, ...}}` (streams).
pub(crate) fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    let msg = match e {
        Value::String(s) => v
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(s)
            .to_string(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string(),
        Value::Null => return None,
        other => other.to_string(),
    };
    Some(excerpt(&msg))
}

/// The gRPC status code of an error answer (5 = not found, 11 = out of range, ...).
pub(crate) fn error_code(v: &Value) -> Option<i64> {
    v.get("code")
        .or_else(|| v.get("error")?.get("grpc_code"))
        .and_then(Value::as_i64)
}

/// An error answer's text from a raw body, or the body itself (cut short).
pub(crate) fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => error_message(&v).unwrap_or_else(|| v.to_string()),
        Err(_) => excerpt(&String::from_utf8_lossy(&body[..body.len().min(200)])),
    }
}

/// Answer of `/v3/kv/range` (also for a single key).
pub(crate) fn decode_range(body: &[u8]) -> Result<Listing, String> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        header: Header,
        #[serde(default)]
        kvs: Vec<RawKv>,
    }
    let r: Resp = parse(body)?;
    let mut kvs = r
        .kvs
        .into_iter()
        .map(RawKv::decode)
        .collect::<Result<Vec<_>, _>>()?;
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Listing {
        kvs,
        revision: r.header.revision,
    })
}

/// Answer of `/v3/kv/txn`: did the comparisons hold?
pub(crate) fn decode_txn(body: &[u8]) -> Result<bool, String> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        succeeded: bool,
    }
    Ok(parse::<Resp>(body)?.succeeded)
}

/// Answer of `/v3/kv/deleterange`: how many keys went.
pub(crate) fn decode_deleted(body: &[u8]) -> Result<u64, String> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default, deserialize_with = "de_i64")]
        deleted: i64,
    }
    Ok(parse::<Resp>(body)?.deleted.max(0) as u64)
}

/// Answer of `/v3/lease/grant`: the lease id.
pub(crate) fn decode_lease_grant(body: &[u8]) -> Result<i64, String> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default, rename = "ID", deserialize_with = "de_i64")]
        id: i64,
        #[serde(default)]
        error: String,
    }
    let r: Resp = parse(body)?;
    if !r.error.is_empty() {
        return Err(r.error);
    }
    if r.id == 0 {
        return Err("etcd granted no lease id".into());
    }
    Ok(r.id)
}

/// Answer of `/v3/lease/keepalive` (a stream of one message): the new TTL,
/// or `None` when etcd no longer knows the lease (TTL 0 or absent).
pub(crate) fn decode_keepalive(body: &[u8]) -> Result<Option<i64>, String> {
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default, rename = "TTL", deserialize_with = "de_i64")]
        ttl: i64,
    }
    // The stream may carry more than one object; the first decides.
    let first = body
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(body);
    let v: Value = parse(first)?;
    if let Some(msg) = error_message(&v) {
        return Err(msg);
    }
    let result = v.get("result").cloned().unwrap_or(v);
    let inner: Inner = serde_json::from_value(result).map_err(|e| e.to_string())?;
    Ok((inner.ttl > 0).then_some(inner.ttl))
}

/// What one line of the watch stream says.
#[derive(Debug, PartialEq)]
pub(crate) enum WatchLine {
    /// The watch is set up; nothing to pass on.
    Created,
    /// Events, or a progress notification (no events).
    Msg(WatchMsg),
    /// etcd ended the watch for another reason than compaction.
    Canceled(String),
    /// An error object in the stream.
    Error(String),
}

/// Decode one line of the `/v3/watch` stream.
///
/// The revision reported with events is the last event's `mod_revision`,
/// not the header's: when etcd catches a watcher up in batches, every batch
/// carries the current store revision in its header although later batches
/// still follow. A batch never splits one revision, so the last event's
/// revision is a safe point to resume after. A message without events
/// (progress notification) is only sent to a watcher that is caught up, so
/// its header revision is safe too.
pub(crate) fn decode_watch_line(line: &[u8]) -> Result<WatchLine, String> {
    #[derive(Deserialize)]
    struct RawEvent {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        kv: RawKv,
    }
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        header: Header,
        #[serde(default)]
        created: bool,
        #[serde(default)]
        canceled: bool,
        #[serde(default, deserialize_with = "de_i64")]
        compact_revision: i64,
        #[serde(default)]
        cancel_reason: String,
        #[serde(default)]
        events: Vec<RawEvent>,
    }
    let v: Value = parse(line)?;
    if let Some(msg) = error_message(&v) {
        return Ok(WatchLine::Error(msg));
    }
    let Some(result) = v.get("result") else {
        return Err(format!("unexpected watch message: {v}"));
    };
    let r: Resp = Resp::deserialize(result).map_err(|e| format!("watch message: {e}: {v}"))?;
    if r.compact_revision > 0 {
        return Ok(WatchLine::Msg(WatchMsg::Compacted {
            compact_revision: r.compact_revision,
        }));
    }
    if r.canceled {
        let reason = if r.cancel_reason.is_empty() {
            "no reason given".to_string()
        } else {
            r.cancel_reason
        };
        return Ok(WatchLine::Canceled(reason));
    }
    if r.created && r.events.is_empty() {
        return Ok(WatchLine::Created);
    }
    let mut events = Vec::with_capacity(r.events.len());
    for e in r.events {
        let kind = match e.kind.as_deref() {
            None | Some("PUT") => EventKind::Put,
            Some("DELETE") => EventKind::Delete,
            Some(other) => return Err(format!("unknown watch event type {other:?}")),
        };
        let mut kv = e.kv.decode()?;
        if kind == EventKind::Delete {
            kv.value.clear();
        }
        events.push(Event { kind, kv });
    }
    let revision = events
        .last()
        .map(|e| e.kv.mod_revision)
        .unwrap_or(r.header.revision);
    Ok(WatchLine::Msg(WatchMsg::Events { events, revision }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn request_bodies() {
        assert_eq!(
            range_prefix("/a/"),
            json!({"key": "L2Ev", "range_end": "L2Ew"})
        );
        assert_eq!(
            range_prefix(""),
            json!({"key": "AA==", "range_end": "AA=="})
        );
        assert_eq!(range_key("/a/b"), json!({"key": "L2EvYg=="}));
        assert_eq!(
            create_txn(&[("/a/b", b"hi"), ("/a/c", b"")]),
            json!({
                "compare": [
                    {"key": "L2EvYg==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                    {"key": "L2EvYw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
                ],
                "success": [
                    {"request_put": {"key": "L2EvYg==", "value": "aGk="}},
                    {"request_put": {"key": "L2EvYw==", "value": ""}},
                ],
            })
        );
        assert_eq!(
            put("/k", b"x", Some(7668682421941799438)),
            json!({"key": "L2s=", "value": "eA==", "lease": "7668682421941799438"})
        );
        assert_eq!(
            put("/k", b"x", None),
            json!({"key": "L2s=", "value": "eA=="})
        );
        assert_eq!(
            delete_txn(&["/a", "/b"]),
            json!({"success": [
                {"request_delete_range": {"key": "L2E="}},
                {"request_delete_range": {"key": "L2I="}},
            ]})
        );
        assert_eq!(
            write_txn(&[("/k", b"x")], Some(7), &["/a"]),
            json!({"success": [
                {"request_put": {"key": "L2s=", "value": "eA==", "lease": "7"}},
                {"request_delete_range": {"key": "L2E="}},
            ]})
        );
        assert_eq!(
            delete_prefix("/a/"),
            json!({"key": "L2Ev", "range_end": "L2Ew"})
        );
        assert_eq!(lease_grant(10), json!({"TTL": "10"}));
        assert_eq!(lease_id(-5), json!({"ID": "-5"}));
        assert_eq!(compaction(12), json!({"revision": "12"}));
        assert_eq!(
            watch_create("/a/", 7),
            json!({"create_request": {
                "key": "L2Ev", "range_end": "L2Ew", "progress_notify": true, "start_revision": "7"
            }})
        );
        assert!(watch_create("/a/", 0)["create_request"]
            .get("start_revision")
            .is_none());
    }

    const HDR: &str = r#""header":{"cluster_id":"2037210783374497686","member_id":"13195394291058371180","revision":"6","raft_term":"2"}"#;

    #[test]
    fn range_answers() {
        let body = format!(
            r#"{{{HDR},"kvs":[
                {{"key":"L2EvYw==","create_revision":"3","mod_revision":"5","version":"2","value":"eA==","lease":"7668682421941799438"}},
                {{"key":"L2EvYg==","create_revision":"2","mod_revision":"2","version":"1","value":"aGk="}}
            ],"count":"2"}}"#
        );
        let l = decode_range(body.as_bytes()).unwrap();
        assert_eq!(l.revision, 6);
        assert_eq!(
            l.kvs,
            vec![
                Kv {
                    key: "/a/b".into(),
                    value: b"hi".to_vec(),
                    create_revision: 2,
                    mod_revision: 2,
                    lease: 0
                },
                Kv {
                    key: "/a/c".into(),
                    value: b"x".to_vec(),
                    create_revision: 3,
                    mod_revision: 5,
                    lease: 7668682421941799438
                },
            ]
        );
        // Nothing found: no "kvs" at all.
        let l = decode_range(format!("{{{HDR}}}").as_bytes()).unwrap();
        assert!(l.kvs.is_empty());
        assert_eq!(l.revision, 6);
        // An empty value is left out by the gateway.
        let l = decode_range(br#"{"kvs":[{"key":"L2E=","create_revision":4,"mod_revision":"4"}]}"#)
            .unwrap();
        assert_eq!(l.kvs[0].value, b"");
        assert_eq!(l.kvs[0].create_revision, 4);
        assert!(decode_range(br#"{"kvs":[{"key":"***"}]}"#).is_err());
        assert!(decode_range(b"404 page not found").is_err());
        assert!(decode_range(br#"{"header":{"revision":"x"}}"#).is_err());
    }

    #[test]
    fn txn_delete_lease_answers() {
        let ok = format!(
            r#"{{{HDR},"succeeded":true,"responses":[{{"response_put":{{"header":{{"revision":"3"}}}}}}]}}"#
        );
        assert!(decode_txn(ok.as_bytes()).unwrap());
        assert!(!decode_txn(format!("{{{HDR}}}").as_bytes()).unwrap());
        assert_eq!(
            decode_deleted(format!(r#"{{{HDR},"deleted":"2"}}"#).as_bytes()).unwrap(),
            2
        );
        assert_eq!(decode_deleted(format!("{{{HDR}}}").as_bytes()).unwrap(), 0);
        assert_eq!(
            decode_lease_grant(
                format!(r#"{{{HDR},"ID":"7668682421941799435","TTL":"2"}}"#).as_bytes()
            )
            .unwrap(),
            7668682421941799435
        );
        assert!(decode_lease_grant(br#"{"ID":"0","error":"too many leases"}"#).is_err());
        let alive =
            format!(r#"{{"result":{{{HDR},"ID":"7668682421941799438","TTL":"30"}}}}"#) + "\n";
        assert_eq!(decode_keepalive(alive.as_bytes()).unwrap(), Some(30));
        let gone = format!(r#"{{"result":{{{HDR},"ID":"7668682421941799438"}}}}"#);
        assert_eq!(decode_keepalive(gone.as_bytes()).unwrap(), None);
        let err = br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        assert_eq!(decode_keepalive(err).unwrap_err(), "etcdserver: no leader");
    }

    #[test]
    fn error_answers() {
        let unary = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(error_text(unary), "etcdserver: requested lease not found");
        let v: Value = serde_json::from_slice(unary).unwrap();
        assert_eq!(error_code(&v), Some(5));
        let stream = br#"{"error":{"grpc_code":11,"http_code":400,"message":"mvcc: required revision has been compacted"}}"#;
        let v: Value = serde_json::from_slice(stream).unwrap();
        assert_eq!(error_code(&v), Some(11));
        assert_eq!(
            error_text(stream),
            "mvcc: required revision has been compacted"
        );
        assert_eq!(error_text(b"404 page not found\n"), "404 page not found");
    }

    #[test]
    fn watch_lines() {
        let created = format!(r#"{{"result":{{{HDR},"created":true}}}}"#);
        assert_eq!(
            decode_watch_line(created.as_bytes()).unwrap(),
            WatchLine::Created
        );
        let events = format!(
            r#"{{"result":{{{HDR},"events":[
                {{"kv":{{"key":"L2EvYg==","create_revision":"2","mod_revision":"2","version":"1","value":"aGk="}}}},
                {{"type":"DELETE","kv":{{"key":"L2wvMQ==","mod_revision":"5"}}}}
            ]}}}}"#
        );
        let WatchLine::Msg(WatchMsg::Events { events, revision }) =
            decode_watch_line(events.as_bytes()).unwrap()
        else {
            panic!("not events");
        };
        assert_eq!(revision, 5, "the last event's revision, not the header's 6");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::Put);
        assert_eq!(events[0].kv.key, "/a/b");
        assert_eq!(events[0].kv.value, b"hi");
        assert_eq!(events[1].kind, EventKind::Delete);
        assert_eq!(events[1].kv.key, "/l/1");
        assert_eq!(events[1].kv.mod_revision, 5);
        assert!(events[1].kv.value.is_empty());

        let progress = format!(r#"{{"result":{{{HDR}}}}}"#);
        assert_eq!(
            decode_watch_line(progress.as_bytes()).unwrap(),
            WatchLine::Msg(WatchMsg::Events {
                events: vec![],
                revision: 6
            })
        );
        let compacted = r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"5"}}"#;
        assert_eq!(
            decode_watch_line(compacted.as_bytes()).unwrap(),
            WatchLine::Msg(WatchMsg::Compacted {
                compact_revision: 5
            })
        );
        let canceled = r#"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#;
        assert_eq!(
            decode_watch_line(canceled.as_bytes()).unwrap(),
            WatchLine::Canceled("permission denied".into())
        );
        let err = r#"{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}"#;
        assert_eq!(
            decode_watch_line(err.as_bytes()).unwrap(),
            WatchLine::Error("etcdserver: no leader".into())
        );
        assert!(decode_watch_line(br#"{"result":{"events":[{"type":"BOGUS","kv":{}}]}}"#).is_err());
        assert!(decode_watch_line(b"{}").is_err());
        assert!(decode_watch_line(b"not json").is_err());
    }
}
