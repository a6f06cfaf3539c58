//! `/v1/voicemails` against a real server on SQLite and PostgreSQL, with recordings in a
//! temp data dir: JSON shapes, the WAV served byte-for-byte, DELETE removing row and file,
//! tenancy, 404s, refusal of unsafe stored paths, size bound and query validation.

mod common;

use common::Server;
use edge_api::ApiConfig;
use edge_store::VoicemailRecord;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// 2026-11-27T16:00:00.000Z
const T0: i64 = 1_795_795_200_000;

/// Runs `$name(&Server, &Path)` on both backends, the server's `data_dir` being a fresh temp
/// dir (the path passed in).
macro_rules! with_data_dir {
    ($name:ident) => {
        with_data_dir!($name, |c: ApiConfig| c);
    };
    ($name:ident, $tweak:expr) => {
        mod $name {
            use super::*;

            async fn run(s: Option<Server>, dir: tempfile::TempDir) {
                let Some(s) = s else { return };
                let s = std::sync::Arc::new(s);
                let inner = std::sync::Arc::clone(&s);
                let path = dir.path().to_owned();
                let res = tokio::spawn(async move { super::$name(&inner, &path).await }).await;
                s.shutdown().await;
                drop(dir);
                if let Err(e) = res {
                    std::panic::resume_unwind(e.into_panic());
                }
            }

            fn config(dir: &tempfile::TempDir) -> ApiConfig {
                let tweak = $tweak;
                tweak(ApiConfig {
                    data_dir: dir.path().to_owned(),
                    ..Default::default()
                })
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let s = common::sqlite_with_config(common::providers(), config(&dir)).await;
                run(Some(s), dir).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let dir = tempfile::tempdir().unwrap();
                let s = common::postgres_with_config(config(&dir)).await;
                run(s, dir).await;
            }
        }
    };
}

/// A valid 8 kHz 16-bit mono PCM WAV holding `samples` (a recognisable ramp).
fn wav(samples: usize) -> Vec<u8> {
    let data_len = (samples * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        out.extend_from_slice(&((i as i16).wrapping_mul(97)).to_le_bytes());
    }
    out
}

fn record(id: &str, account: &str, number_id: Option<&str>, created: i64) -> VoicemailRecord {
    VoicemailRecord {
        id: id.into(),
        account_id: account.into(),
        call_id: "call_c4ll".into(),
        phone_number_id: number_id.map(Into::into),
        caller: "+15005550006".into(),
        to: "+14155551234".into(),
        duration_ms: 4_250,
        ended_by: "dtmf-hash".into(),
        recording_path: format!("voicemail/{id}.wav"),
        created_at_ms: created,
    }
}

/// Inserts the record and writes its recording under `data_dir`.
async fn leave(s: &Server, data_dir: &Path, rec: &VoicemailRecord, audio: &[u8]) -> PathBuf {
    let path = data_dir.join(&rec.recording_path);
    tokio::fs::create_dir_all(path.parent().unwrap()).await.unwrap();
    tokio::fs::write(&path, audio).await.unwrap();
    s.store.insert_voicemail(rec).await.unwrap();
    path
}

/// GET returning (status, content-type, body bytes).
async fn fetch(s: &Server, path: &str, key: &str) -> (u16, String, Vec<u8>) {
    let resp = s
        .client
        .get(format!("{}{}", s.base, path))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn ids(r: &common::Resp) -> Vec<String> {
    r.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", r.text))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn shape_recording_and_delete(s: &Server, data_dir: &Path) {
    let (acc, key) = s.key().await;
    let (_, other_key) = s.key().await;
    // Bigger than one streaming chunk so chunking is exercised.
    let audio = wav(50_000);
    let rec = record("vm_9f8e", &acc, Some("phn_abc"), T0);
    let file = leave(s, data_dir, &rec, &audio).await;

    let r = s.call("GET", "/v1/voicemails/vm_9f8e", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = json!({
        "id": "vm_9f8e",
        "call_id": "call_c4ll",
        "phone_number_id": "phn_abc",
        "caller": "+15005550006",
        "to": "+14155551234",
        "duration_ms": 4250,
        "ended_by": "dtmf-hash",
        "created_at": "2026-11-27T16:00:00.000Z",
        "recording_url": "/v1/voicemails/vm_9f8e/recording"
    });
    assert_eq!(r.json, expected);
    let r = s.call("GET", "/v1/voicemails", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"data": [expected], "next_cursor": null, "has_more": false})
    );

    // The recording, byte for byte, as audio/wav, at the advertised URL.
    let (status, ct, body) = fetch(s, "/v1/voicemails/vm_9f8e/recording", &key).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "audio/wav");
    assert_eq!(body.len(), audio.len());
    assert!(body == audio, "recording bytes differ");

    // Another account sees nothing and cannot delete.
    for path in ["/v1/voicemails/vm_9f8e", "/v1/voicemails/vm_9f8e/recording"] {
        let r = s.call("GET", path, Some(&other_key), None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    let r = s.call("GET", "/v1/voicemails", Some(&other_key), None).await;
    assert!(ids(&r).is_empty());
    let r = s.call("DELETE", "/v1/voicemails/vm_9f8e", Some(&other_key), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(file.exists());

    // Auth required everywhere.
    for (m, path) in [
        ("GET", "/v1/voicemails"),
        ("GET", "/v1/voicemails/vm_9f8e"),
        ("GET", "/v1/voicemails/vm_9f8e/recording"),
        ("DELETE", "/v1/voicemails/vm_9f8e"),
    ] {
        let r = s.call(m, path, None, None).await;
        assert_eq!(r.status, 401, "{m} {path}: {}", r.text);
    }
    assert!(file.exists());

    // DELETE removes row and file; then everything is 404.
    let r = s.call("DELETE", "/v1/voicemails/vm_9f8e", Some(&key), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!file.exists(), "recording file still on disk");
    assert_eq!(s.store.get_voicemail(&acc, "vm_9f8e").await.unwrap(), None);
    for (m, path) in [
        ("GET", "/v1/voicemails/vm_9f8e"),
        ("GET", "/v1/voicemails/vm_9f8e/recording"),
        ("DELETE", "/v1/voicemails/vm_9f8e"),
    ] {
        let r = s.call(m, path, Some(&key), None).await;
        assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    let r = s.call("GET", "/v1/voicemails", Some(&key), None).await;
    assert!(ids(&r).is_empty());
}
with_data_dir!(shape_recording_and_delete);

async fn missing_files_and_junk_ids(s: &Server, data_dir: &Path) {
    let (acc, key) = s.key().await;
    // A row whose file is gone: the metadata is still served, the recording is a JSON 404,
    // and DELETE still succeeds.
    let rec = record("vm_nofile", &acc, None, T0);
    s.store.insert_voicemail(&rec).await.unwrap();
    let r = s.call("GET", "/v1/voicemails/vm_nofile", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["phone_number_id"], Value::Null);
    let (status, ct, body) = fetch(s, "/v1/voicemails/vm_nofile/recording", &key).await;
    assert_eq!(status, 404);
    assert!(ct.starts_with("application/json"), "{ct}");
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "not_found");
    let r = s.call("DELETE", "/v1/voicemails/vm_nofile", Some(&key), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.store.get_voicemail(&acc, "vm_nofile").await.unwrap(), None);

    // Unknown, wrong-kind and junk ids: 404 without touching anything.
    for path in [
        "/v1/voicemails/vm_nope",
        "/v1/voicemails/call_c4ll",
        "/v1/voicemails/vm_a%27b",
        "/v1/voicemails/vm_nope/recording",
        "/v1/voicemails/..%2F..%2Fetc%2Fpasswd/recording",
    ] {
        let r = s.call("GET", path, Some(&key), None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    assert!(data_dir.exists());
}
with_data_dir!(missing_files_and_junk_ids);

async fn unsafe_stored_paths_are_refused(s: &Server, data_dir: &Path) {
    let (acc, key) = s.key().await;
    // A secret outside the data dir and one inside it, reachable only through `..` or an
    // absolute path. The store refuses such paths on insert, so write them behind its back.
    let outside = data_dir.join("secret.wav");
    tokio::fs::write(&outside, wav(10)).await.unwrap();
    let nested = data_dir.join("voicemail");
    tokio::fs::create_dir_all(&nested).await.unwrap();
    let abs = outside.to_str().unwrap().to_owned();
    for (i, bad) in ["voicemail/../secret.wav", abs.as_str(), "voicemail/./../secret.wav"]
        .into_iter()
        .enumerate()
    {
        let id = format!("vm_bad{i}");
        s.store
            .insert_voicemail(&record(&id, &acc, None, T0 + i as i64))
            .await
            .unwrap();
        sqlx::query("UPDATE voicemails SET recording_path = $1 WHERE id = $2")
            .bind(bad)
            .bind(&id)
            .execute(s.store.pool())
            .await
            .unwrap();
        let (status, _, body) = fetch(s, &format!("/v1/voicemails/{id}/recording"), &key).await;
        assert_eq!(status, 500, "{bad}");
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["error"]["code"], "recording_unavailable", "{bad}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "path leaked");
        // DELETE drops the row but leaves the file it must not touch.
        let r = s
            .call("DELETE", &format!("/v1/voicemails/{id}"), Some(&key), None)
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert!(outside.exists(), "{bad}: file outside the recordings removed");
    }
    // A row edited to an unknown ending is an internal error, not a malformed response.
    s.store
        .insert_voicemail(&record("vm_odd", &acc, None, T0))
        .await
        .unwrap();
    sqlx::query("UPDATE voicemails SET ended_by = 'bogus' WHERE id = 'vm_odd'")
        .execute(s.store.pool())
        .await
        .unwrap();
    let r = s.call("GET", "/v1/voicemails/vm_odd", Some(&key), None).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.error().0, "internal");
    let r = s.call("GET", "/v1/voicemails", Some(&key), None).await;
    assert_eq!(r.status, 500, "{}", r.text);
    // A directory where the file should be is not served either.
    let rec = record("vm_dir", &acc, None, T0);
    tokio::fs::create_dir_all(data_dir.join(&rec.recording_path))
        .await
        .unwrap();
    s.store.insert_voicemail(&rec).await.unwrap();
    let (status, _, _) = fetch(s, "/v1/voicemails/vm_dir/recording", &key).await;
    assert_eq!(status, 500);
}
with_data_dir!(unsafe_stored_paths_are_refused);

async fn size_bound(s: &Server, data_dir: &Path) {
    let (acc, key) = s.key().await;
    // The config below allows 1000 bytes: 44 + 2 * 478 = 1000 is served, one sample more is not.
    let fits = wav(478);
    assert_eq!(fits.len(), 1000);
    leave(s, data_dir, &record("vm_fits", &acc, None, T0), &fits).await;
    leave(s, data_dir, &record("vm_big", &acc, None, T0), &wav(479)).await;
    let (status, ct, body) = fetch(s, "/v1/voicemails/vm_fits/recording", &key).await;
    assert_eq!((status, ct.as_str()), (200, "audio/wav"));
    assert!(body == fits);
    let (status, _, body) = fetch(s, "/v1/voicemails/vm_big/recording", &key).await;
    assert_eq!(status, 500);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "recording_unavailable");
}
with_data_dir!(size_bound, |c: ApiConfig| ApiConfig {
    max_recording_bytes: 1000,
    ..c
});

async fn filter_pagination_and_validation(s: &Server, _data_dir: &Path) {
    let (acc, key) = s.key().await;
    let k = Some(key.as_str());
    for i in 0..5i64 {
        let num = if i % 2 == 0 { "phn_one" } else { "phn_two" };
        let rec = record(&format!("vm_v{i}"), &acc, Some(num), T0 + i * 60_000);
        s.store.insert_voicemail(&rec).await.unwrap();
    }
    let r = s.call("GET", "/v1/voicemails?limit=3", k, None).await;
    assert_eq!(ids(&r), ["vm_v4", "vm_v3", "vm_v2"]);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = s
        .call("GET", &format!("/v1/voicemails?limit=3&cursor={cursor}"), k, None)
        .await;
    assert_eq!(ids(&r), ["vm_v1", "vm_v0"]);
    assert_eq!(r.json["next_cursor"], Value::Null);

    let r = s.call("GET", "/v1/voicemails?phone_number_id=phn_two", k, None).await;
    assert_eq!(ids(&r), ["vm_v3", "vm_v1"]);
    let r = s
        .call("GET", "/v1/voicemails?phone_number_id=phn_one&limit=2", k, None)
        .await;
    assert_eq!(ids(&r), ["vm_v4", "vm_v2"]);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "GET",
            &format!("/v1/voicemails?phone_number_id=phn_one&limit=2&cursor={cursor}"),
            k,
            None,
        )
        .await;
    assert_eq!(ids(&r), ["vm_v0"]);
    let r = s.call("GET", "/v1/voicemails?phone_number_id=phn_zzz", k, None).await;
    assert_eq!(r.status, 200);
    assert!(ids(&r).is_empty());

    for (q, field) in [
        ("phone_number_id=agt_x", "phone_number_id"),
        ("phone_number_id=", "phone_number_id"),
        ("phone_number_id=phn_a%27b", "phone_number_id"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
    ] {
        let r = s.call("GET", &format!("/v1/voicemails?{q}"), k, None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error(), ("invalid_field".to_owned(), Some(field.to_owned())), "{q}");
    }
    // No writes besides DELETE.
    let r = s.call("POST", "/v1/voicemails", k, Some(json!({}))).await;
    assert_eq!(r.status, 405, "{}", r.text);
    let r = s.call("PATCH", "/v1/voicemails/vm_v0", k, Some(json!({}))).await;
    assert_eq!(r.status, 405, "{}", r.text);
    let r = s.call("DELETE", "/v1/voicemails/vm_v0/recording", k, None).await;
    assert_eq!(r.status, 405, "{}", r.text);
}
with_data_dir!(filter_pagination_and_validation);

async fn openapi_documents_voicemails(s: &Server, _data_dir: &Path) {
    let r = s.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let doc = &r.json;
    let paths = &doc["paths"];
    let list = &paths["/v1/voicemails"]["get"];
    assert_eq!(list["operationId"], "list_voicemails", "{}", r.text);
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, ["phone_number_id", "limit", "cursor", "starting_after"]);
    assert_eq!(paths["/v1/voicemails/{id}"]["get"]["operationId"], "get_voicemail");
    assert_eq!(
        paths["/v1/voicemails/{id}"]["delete"]["operationId"],
        "delete_voicemail"
    );
    assert!(paths["/v1/voicemails/{id}"]["delete"]["responses"].get("204").is_some());
    let rec = &paths["/v1/voicemails/{id}/recording"]["get"];
    assert_eq!(rec["operationId"], "get_voicemail_recording");
    let wav = &rec["responses"]["200"]["content"]["audio/wav"]["schema"];
    assert_eq!(wav["type"], "string", "{rec}");
    assert_eq!(wav["format"], "binary", "{rec}");
    assert!(rec["responses"]["404"]["content"]["application/json"].is_object());
    let schemas = &doc["components"]["schemas"];
    for f in [
        "id",
        "call_id",
        "phone_number_id",
        "caller",
        "to",
        "duration_ms",
        "ended_by",
        "created_at",
        "recording_url",
    ] {
        assert!(
            schemas["Voicemail"]["properties"].get(f).is_some(),
            "Voicemail.{f} missing"
        );
    }
    let ended: Vec<&str> = schemas["VoicemailEndedBy"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ended, edge_store::VOICEMAIL_ENDED_BY);
}
with_data_dir!(openapi_documents_voicemails);
