//! Store behaviour on SQLite and PostgreSQL: keys, tenancy, secrets at rest, the routing
//! index, pagination, and that failed writes change nothing.

mod common;

use common::Fixture;
use edge_store::{
    AgentPatch, AgentStatus, InboundRouting, InboundRoutingPatch, NewAgent, NewIntegration, NewNumber,
    NewProviderConfig, NumberPatch, NumberSource, Provider, Secret, SecretBox, Store, StoreError,
};
use sqlx::Row;

async fn account(fx: &Fixture) -> String {
    fx.store.create_api_key(None, "test").await.unwrap().0
}

async fn agent(fx: &Fixture, account: &str, name: &str) -> String {
    fx.store
        .create_agent(
            account,
            NewAgent {
                name: name.into(),
                sip_uri: "sip:bot@10.0.0.5:5060".into(),
                max_concurrent_calls: 10,
                voicemail_message: Some("agent default".into()),
                status: AgentStatus::Active,
                sip_username: None,
                sip_password: None,
                media_encryption: Default::default(),
            },
        )
        .await
        .unwrap()
        .id
}

fn byo(number: &str, agent_id: &str, inbound: Option<InboundRouting>) -> NewNumber {
    NewNumber {
        phone_number: number.into(),
        friendly_name: Some("Sales Line".into()),
        agent_id: agent_id.into(),
        provider: Provider::Twilio,
        source: NumberSource::Byo,
        provider_ref: None,
        inbound_routing: inbound,
        provider_config: Some(NewProviderConfig {
            trunk_address: "yourtrunk.pstn.twilio.com".into(),
            auth_username: Some("oneinbox".into()),
            auth_password: Some(Secret::new("s3cret-sip-pw")),
            ..Default::default()
        }),
    }
}

async fn count(fx: &Fixture, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

async fn api_keys(fx: &Fixture) {
    let (acc, key) = fx.store.create_api_key(None, "cli").await.unwrap();
    assert!(acc.starts_with("acc_"));
    assert!(key.starts_with("oik_"));
    assert_eq!(fx.store.authenticate(&key).await.unwrap(), Some(acc.clone()));
    let mut wrong = key.clone();
    wrong.replace_range(10..11, if &key[10..11] == "0" { "1" } else { "0" });
    assert_eq!(fx.store.authenticate(&wrong).await.unwrap(), None);
    assert_eq!(fx.store.authenticate("oik_short").await.unwrap(), None);
    // A second key for the same account; an explicit new account id is created on demand.
    let (acc2, key2) = fx.store.create_api_key(Some(&acc), "second").await.unwrap();
    assert_eq!(acc2, acc);
    assert_eq!(fx.store.authenticate(&key2).await.unwrap(), Some(acc.clone()));
    let (acc3, _) = fx.store.create_api_key(Some("acc_cli42"), "x").await.unwrap();
    assert_eq!(acc3, "acc_cli42");
    assert!(fx.store.create_api_key(Some("bad id"), "x").await.is_err());
    // Only hashes are stored.
    let rows = sqlx::query("SELECT key_hash FROM api_keys")
        .fetch_all(fx.store.pool())
        .await
        .unwrap();
    for r in rows {
        let h: String = r.try_get("key_hash").unwrap();
        assert_ne!(h, key);
        assert!(!key.contains(&h));
    }
}
on_both_backends!(api_keys);

async fn agents_crud_and_tenancy(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let id = agent(fx, &a, "one").await;
    assert!(fx.store.get_agent(&a, &id).await.unwrap().is_some());
    assert!(fx.store.get_agent(&b, &id).await.unwrap().is_none());
    assert!(fx.index_agent(&id));
    assert!(matches!(
        fx.store.update_agent(&b, &id, AgentPatch::default()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        fx.store.delete_agent(&b, &id).await,
        Err(StoreError::NotFound)
    ));
    let up = fx
        .store
        .update_agent(
            &a,
            &id,
            AgentPatch {
                name: Some("renamed".into()),
                voicemail_message: Some(None),
                status: Some(AgentStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(up.name, "renamed");
    assert_eq!(up.voicemail_message, None);
    assert_eq!(up.sip_uri, "sip:bot@10.0.0.5:5060");
    let idx = fx.store.index().agent(&id).unwrap();
    assert_eq!(idx.status, AgentStatus::Disabled);
    assert_eq!(idx.name, "renamed");

    // In use by a number (as fallback) -> conflict, agent unchanged.
    let primary = agent(fx, &a, "primary").await;
    fx.store
        .create_number(
            &a,
            byo(
                "+15005550001",
                &primary,
                Some(InboundRouting {
                    fallback_agent_id: Some(id.clone()),
                    ..Default::default()
                }),
            ),
        )
        .await
        .unwrap();
    assert!(matches!(
        fx.store.delete_agent(&a, &id).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(fx.store.get_agent(&a, &id).await.unwrap().is_some());
    let unused = agent(fx, &a, "unused").await;
    fx.store.delete_agent(&a, &unused).await.unwrap();
    assert!(fx.store.get_agent(&a, &unused).await.unwrap().is_none());
    assert!(fx.store.index().agent(&unused).is_none());
}
on_both_backends!(agents_crud_and_tenancy);

impl Fixture {
    fn index_agent(&self, id: &str) -> bool {
        self.store.index().agent(id).is_some()
    }
}

async fn numbers_index_and_secrets(fx: &Fixture) {
    let a = account(fx).await;
    let primary = agent(fx, &a, "primary").await;
    let routing = agent(fx, &a, "routing").await;
    let fallback = agent(fx, &a, "fallback").await;
    let rec = fx
        .store
        .create_number(
            &a,
            byo(
                "+15739693824",
                &primary,
                Some(InboundRouting {
                    agent_id: Some(routing.clone()),
                    fallback_agent_id: Some(fallback.clone()),
                    voicemail_message: Some("leave a message".into()),
                    transfer: Default::default(),
                }),
            ),
        )
        .await
        .unwrap();
    assert!(rec.id.starts_with("phn_"));
    assert!(rec.provider_config.as_ref().unwrap().auth_password_set);

    // Secret at rest: ciphertext, not plaintext.
    let sealed: String = sqlx::query("SELECT auth_password_sealed FROM phone_numbers")
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get("auth_password_sealed")
        .unwrap();
    assert!(!sealed.contains("s3cret-sip-pw"));
    assert!(!format!("{rec:?}").contains("s3cret-sip-pw"));

    // Index: decrypted for the SIP side, redacted in Debug; with or without '+'.
    let index = fx.store.index();
    let route = index.lookup_number("+15739693824").unwrap();
    assert_eq!(index.lookup_number("15739693824").unwrap().number_id, rec.id);
    assert_eq!(route.source, NumberSource::Byo);
    let trunk = route.provider_config.as_ref().unwrap();
    assert_eq!(trunk.auth_password.as_ref().unwrap().expose(), "s3cret-sip-pw");
    assert!(!format!("{route:?}").contains("s3cret-sip-pw"));
    let ib = route.inbound_routing.as_ref().unwrap();
    assert_eq!(ib.agent_id, routing);
    assert_eq!(ib.fallback_agent_id.as_deref(), Some(fallback.as_str()));

    // PATCH: merge into routing, effective for the very next lookup.
    fx.store
        .update_number(
            &a,
            &rec.id,
            NumberPatch {
                inbound_routing: Some(Some(InboundRoutingPatch {
                    agent_id: Some(None),
                    voicemail_message: Some(Some("Updated voicemail message.".into())),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let route = index.lookup_number("+15739693824").unwrap();
    let ib = route.inbound_routing.as_ref().unwrap();
    assert_eq!(ib.agent_id, primary, "no override -> number's own agent");
    assert_eq!(ib.fallback_agent_id.as_deref(), Some(fallback.as_str()));
    assert_eq!(ib.voicemail_message.as_deref(), Some("Updated voicemail message."));
    // Password survives an update.
    assert_eq!(
        route
            .provider_config
            .as_ref()
            .unwrap()
            .auth_password
            .as_ref()
            .unwrap()
            .expose(),
        "s3cret-sip-pw"
    );

    // New primary agent: followed by inbound since there's no override.
    let up = fx
        .store
        .update_number(
            &a,
            &rec.id,
            NumberPatch {
                agent_id: Some(routing.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(up.agent_id, routing);
    assert_eq!(
        index
            .lookup_number("+15739693824")
            .unwrap()
            .inbound_routing
            .as_ref()
            .unwrap()
            .agent_id,
        routing
    );

    // inbound_routing: null -> outbound only.
    fx.store
        .update_number(
            &a,
            &rec.id,
            NumberPatch {
                inbound_routing: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(index.lookup_number("+15739693824").unwrap().inbound_routing.is_none());
    assert!(fx
        .store
        .get_number(&a, &rec.id)
        .await
        .unwrap()
        .unwrap()
        .inbound_routing
        .is_none());

    // Delete: gone from DB and index.
    fx.store.delete_number(&a, &rec.id).await.unwrap();
    assert!(index.lookup_number("+15739693824").is_none());
    assert!(fx.store.get_number(&a, &rec.id).await.unwrap().is_none());
}
on_both_backends!(numbers_index_and_secrets);

async fn failed_writes_change_nothing(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let agent_a = agent(fx, &a, "a").await;
    let agent_b = agent(fx, &b, "b").await;
    let rec = fx
        .store
        .create_number(&a, byo("+15005550100", &agent_a, None))
        .await
        .unwrap();

    // Duplicate number, even from another account.
    match fx.store.create_number(&b, byo("+15005550100", &agent_b, None)).await {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, Some("phone_number")),
        other => panic!("expected conflict, got {other:?}"),
    }
    // Another account's agent as primary / fallback.
    match fx.store.create_number(&a, byo("+15005550101", &agent_b, None)).await {
        Err(StoreError::InvalidReference { field, .. }) => assert_eq!(field, "agent_id"),
        other => panic!("expected invalid reference, got {other:?}"),
    }
    let bad_fb = InboundRouting {
        fallback_agent_id: Some(agent_b.clone()),
        ..Default::default()
    };
    match fx
        .store
        .create_number(&a, byo("+15005550102", &agent_a, Some(bad_fb)))
        .await
    {
        Err(StoreError::InvalidReference { field, .. }) => {
            assert_eq!(field, "inbound_routing.fallback.agent_id")
        }
        other => panic!("expected invalid reference, got {other:?}"),
    }
    assert_eq!(count(fx, "SELECT COUNT(*) AS n FROM phone_numbers").await, 1);
    assert_eq!(fx.store.index().number_count(), 1);

    // PATCH to another account's agent: rejected, row and index unchanged.
    let err = fx
        .store
        .update_number(
            &a,
            &rec.id,
            NumberPatch {
                agent_id: Some(agent_b.clone()),
                friendly_name: Some(Some("changed".into())),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(
        err,
        Err(StoreError::InvalidReference { field: "agent_id", .. })
    ));
    let now = fx.store.get_number(&a, &rec.id).await.unwrap().unwrap();
    assert_eq!(now, rec);
    assert_eq!(
        fx.store.index().lookup_number("+15005550100").unwrap().agent_id,
        agent_a
    );
    // Account B cannot see, change or delete A's number.
    assert!(fx.store.get_number(&b, &rec.id).await.unwrap().is_none());
    assert!(matches!(
        fx.store.update_number(&b, &rec.id, NumberPatch::default()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        fx.store.delete_number(&b, &rec.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(fx.store.phone_number_taken("+15005550100").await.unwrap());
}
on_both_backends!(failed_writes_change_nothing);

async fn pagination(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(agent(fx, &a, &format!("agent{i}")).await);
    }
    agent(fx, &b, "other").await;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = fx.store.list_agents(&a, 2, cursor.as_ref()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|x| x.id));
        match page.next_cursor {
            Some(c) => cursor = Some(edge_store::Cursor::decode(&c).unwrap()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    let mut want = made.clone();
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
}
on_both_backends!(pagination);

async fn integrations(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let rec = fx
        .store
        .create_integration(
            &a,
            NewIntegration {
                name: "My Twilio Account".into(),
                provider: Provider::Twilio,
                api_key: Secret::new("twilio-auth-token-xyz"),
                metadata: serde_json::json!({"account_sid": "AC123"}),
            },
        )
        .await
        .unwrap();
    assert!(rec.id.starts_with("crd_"));
    let stored: String = sqlx::query("SELECT api_key_sealed FROM integrations")
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get("api_key_sealed")
        .unwrap();
    assert!(!stored.contains("twilio-auth-token-xyz"));
    assert_eq!(
        fx.store
            .integration_api_key(&a, &rec.id)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "twilio-auth-token-xyz"
    );
    assert!(fx.store.integration_api_key(&b, &rec.id).await.unwrap().is_none());
    assert_eq!(fx.store.get_integration(&a, &rec.id).await.unwrap().unwrap(), rec);
    assert!(fx.store.get_integration(&b, &rec.id).await.unwrap().is_none());
    assert_eq!(fx.store.list_integrations(&a, 10, None).await.unwrap().items.len(), 1);
    assert!(fx.store.list_integrations(&b, 10, None).await.unwrap().items.is_empty());
    assert!(matches!(
        fx.store.delete_integration(&b, &rec.id).await,
        Err(StoreError::NotFound)
    ));
    fx.store.delete_integration(&a, &rec.id).await.unwrap();
    assert!(fx.store.get_integration(&a, &rec.id).await.unwrap().is_none());
}
on_both_backends!(integrations);

async fn reload_rebuilds_index(fx: &Fixture) {
    let a = account(fx).await;
    let ag = agent(fx, &a, "a").await;
    fx.store
        .create_number(&a, byo("+15005550199", &ag, Some(InboundRouting::default())))
        .await
        .unwrap();
    // A second store on the same database loads the same routes (decrypting passwords).
    let again = Store::connect(fx.config.clone()).await.unwrap();
    let route = again.index().lookup_number("+15005550199").unwrap();
    assert_eq!(route.inbound_routing.as_ref().unwrap().agent_id, ag);
    assert_eq!(
        route
            .provider_config
            .as_ref()
            .unwrap()
            .auth_password
            .as_ref()
            .unwrap()
            .expose(),
        "s3cret-sip-pw"
    );
    assert!(again.index().agent(&ag).is_some());
    again.close().await;
    // The wrong key cannot open the stored secrets: startup fails rather than route garbage.
    let mut wrong = fx.config.clone();
    wrong.secrets = SecretBox::new([1u8; 32]);
    let err = Store::connect(wrong).await.unwrap_err();
    assert!(matches!(err, StoreError::Secret(_)), "{err:?}");
}
on_both_backends!(reload_rebuilds_index);

#[tokio::test]
async fn sqlite_uses_wal_and_creates_data_dir() {
    let fx = common::sqlite().await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    match &fx.config.database {
        edge_store::Database::Sqlite { data_dir } => {
            assert!(data_dir.join(edge_store::SQLITE_FILE_NAME).exists())
        }
        other => panic!("{other:?}"),
    }
    fx.cleanup().await;
}

async fn second_node_catches_up_on_reload(fx: &Fixture) {
    // Two stores on one database stand for two edge nodes.
    let other = std::sync::Arc::new(Store::connect(fx.config.clone()).await.unwrap());
    let a = account(fx).await;
    let ag = agent(fx, &a, "a").await;
    let rec = fx
        .store
        .create_number(&a, byo("+15005550177", &ag, Some(InboundRouting::default())))
        .await
        .unwrap();
    assert!(other.index().lookup_number("+15005550177").is_none());
    other.reload_index().await.unwrap();
    assert_eq!(other.index().lookup_number("+15005550177").unwrap().agent_id, ag);
    assert!(other.index().agent(&ag).is_some());

    // Periodic refresh picks up a PATCH and then a delete.
    let task = other.spawn_index_refresh(std::time::Duration::from_millis(100));
    fx.store
        .update_number(
            &a,
            &rec.id,
            NumberPatch {
                inbound_routing: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if other
            .index()
            .lookup_number("+15005550177")
            .is_some_and(|r| r.inbound_routing.is_none())
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "refresh did not pick up the PATCH");
    fx.store.delete_number(&a, &rec.id).await.unwrap();
    fx.store.delete_agent(&a, &ag).await.unwrap();
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if other.index().lookup_number("+15005550177").is_none() && other.index().agent(&ag).is_none() {
            gone = true;
            break;
        }
    }
    assert!(gone, "refresh did not drop deleted entries");
    task.abort();
    other.close().await;
}
on_both_backends!(second_node_catches_up_on_reload);

async fn agent_with_credentials(
    fx: &Fixture,
    account: &str,
    username: &str,
    password: &str,
) -> Result<String, StoreError> {
    fx.store
        .create_agent(
            account,
            NewAgent {
                name: "dialer".into(),
                sip_uri: "sip:bot@10.0.0.5:5060".into(),
                max_concurrent_calls: 2,
                voicemail_message: None,
                status: AgentStatus::Active,
                sip_username: Some(username.into()),
                sip_password: Some(Secret::new(password)),
                media_encryption: Default::default(),
            },
        )
        .await
        .map(|a| a.id)
}

fn creds(username: Option<Option<&str>>, password: Option<Option<&str>>) -> AgentPatch {
    AgentPatch {
        sip_username: username.map(|u| u.map(str::to_owned)),
        sip_password: password.map(|p| p.map(Secret::new)),
        ..Default::default()
    }
}

async fn agent_sip_credentials(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let id = agent_with_credentials(fx, &a, "dialer.one", "agent-pw-123")
        .await
        .unwrap();

    // Sealed at rest, bound to the row; decrypted in the record and index, redacted in Debug.
    let sealed: String = sqlx::query("SELECT sip_password_sealed FROM agents WHERE id = $1")
        .bind(&id)
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get("sip_password_sealed")
        .unwrap();
    assert!(sealed.starts_with("v1.") && !sealed.contains("agent-pw-123"));
    let rec = fx.store.get_agent(&a, &id).await.unwrap().unwrap();
    assert_eq!(rec.sip_username.as_deref(), Some("dialer.one"));
    assert_eq!(rec.sip_password.as_ref().unwrap().expose(), "agent-pw-123");
    assert!(!format!("{rec:?}").contains("agent-pw-123"));
    let idx = fx.store.index().agent_by_sip_username("dialer.one").unwrap();
    assert_eq!(idx.id, id);
    assert_eq!(idx.sip_password.as_ref().unwrap().expose(), "agent-pw-123");
    assert!(fx.store.index().agent_by_sip_username("Dialer.one").is_none());

    // Unique across accounts; a failed create leaves no row.
    match agent_with_credentials(fx, &b, "dialer.one", "other-pw-456").await {
        Err(StoreError::Conflict { field, .. }) => assert_eq!(field, Some("sip_username")),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(count(fx, "SELECT COUNT(*) AS n FROM agents").await, 1);
    // Both or neither.
    for (u, p, missing) in [
        (Some("x"), None, "sip_password"),
        (None, Some("password1"), "sip_username"),
    ] {
        let err = fx
            .store
            .create_agent(
                &a,
                NewAgent {
                    name: "half".into(),
                    sip_uri: "sip:bot@10.0.0.5".into(),
                    max_concurrent_calls: 1,
                    voicemail_message: None,
                    status: AgentStatus::Active,
                    sip_username: u.map(Into::into),
                    sip_password: p.map(Secret::new),
                    media_encryption: Default::default(),
                },
            )
            .await;
        match err {
            Err(StoreError::InvalidField { field, .. }) => assert_eq!(field, missing),
            other => panic!("expected invalid field, got {other:?}"),
        }
    }

    // Another agent cannot take the name by PATCH; re-sending its own name is fine.
    let other = agent(fx, &b, "other").await;
    assert!(matches!(
        fx.store
            .update_agent(&b, &other, creds(Some(Some("dialer.one")), Some(Some("pw-other-1"))))
            .await,
        Err(StoreError::Conflict {
            field: Some("sip_username"),
            ..
        })
    ));
    assert!(fx
        .store
        .get_agent(&b, &other)
        .await
        .unwrap()
        .unwrap()
        .sip_username
        .is_none());
    fx.store
        .update_agent(&a, &id, creds(Some(Some("dialer.one")), None))
        .await
        .unwrap();
    // Username alone on an agent without a password: refused.
    assert!(matches!(
        fx.store
            .update_agent(&b, &other, creds(Some(Some("fresh")), None))
            .await,
        Err(StoreError::InvalidField {
            field: "sip_password",
            ..
        })
    ));

    // Rename: the old name is free at once and another agent can take it.
    let up = fx
        .store
        .update_agent(&a, &id, creds(Some(Some("dialer.two")), Some(Some("rotated-pw-1"))))
        .await
        .unwrap();
    assert_eq!(up.sip_password.as_ref().unwrap().expose(), "rotated-pw-1");
    let index = fx.store.index();
    assert!(index.agent_by_sip_username("dialer.one").is_none());
    assert_eq!(index.agent_by_sip_username("dialer.two").unwrap().id, id);
    fx.store
        .update_agent(&b, &other, creds(Some(Some("dialer.one")), Some(Some("pw-other-1"))))
        .await
        .unwrap();
    assert_eq!(index.agent_by_sip_username("dialer.one").unwrap().id, other);
    // Other fields keep the credentials; the index record follows the change.
    fx.store
        .update_agent(
            &a,
            &id,
            AgentPatch {
                status: Some(AgentStatus::Disabled),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let idx = index.agent_by_sip_username("dialer.two").unwrap();
    assert_eq!(idx.status, AgentStatus::Disabled);
    assert_eq!(idx.sip_password.as_ref().unwrap().expose(), "rotated-pw-1");

    // A second node loads the same mapping (decrypting the passwords).
    let again = Store::connect(fx.config.clone()).await.unwrap();
    let loaded = again.index().agent_by_sip_username("dialer.two").unwrap();
    assert_eq!(loaded.sip_password.as_ref().unwrap().expose(), "rotated-pw-1");
    assert_eq!(again.index().agent_by_sip_username("dialer.one").unwrap().id, other);

    // Clearing the username clears the password too; password alone cannot be cleared.
    assert!(matches!(
        fx.store.update_agent(&a, &id, creds(None, Some(None))).await,
        Err(StoreError::InvalidField {
            field: "sip_password",
            ..
        })
    ));
    let cleared = fx.store.update_agent(&a, &id, creds(Some(None), None)).await.unwrap();
    assert!(cleared.sip_username.is_none() && cleared.sip_password.is_none());
    assert!(index.agent_by_sip_username("dialer.two").is_none());
    let raw: Option<String> = sqlx::query("SELECT sip_password_sealed FROM agents WHERE id = $1")
        .bind(&id)
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
        .try_get("sip_password_sealed")
        .unwrap();
    assert!(raw.is_none());

    // Delete drops the mapping here; reload drops it on the other node.
    fx.store.delete_agent(&b, &other).await.unwrap();
    assert!(index.agent_by_sip_username("dialer.one").is_none());
    assert!(again.index().agent_by_sip_username("dialer.two").is_some());
    again.reload_index().await.unwrap();
    assert!(again.index().agent_by_sip_username("dialer.one").is_none());
    assert!(again.index().agent_by_sip_username("dialer.two").is_none());
    again.close().await;
}
on_both_backends!(agent_sip_credentials);

async fn integration_trunks(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let create = |account: String, metadata: serde_json::Value| async move {
        // Distinct created_at so "newest" is well defined.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        fx.store
            .create_integration(
                &account,
                NewIntegration {
                    name: "trunk".into(),
                    provider: Provider::Twilio,
                    api_key: Secret::new("tok"),
                    metadata,
                },
            )
            .await
            .unwrap()
            .id
    };
    let index = fx.store.index();
    assert_eq!(index.integration_trunk(&a, Provider::Twilio), None);
    let first = create(a.clone(), serde_json::json!({"sip_trunk": "old.pstn.twilio.com"})).await;
    assert_eq!(
        index.integration_trunk(&a, Provider::Twilio).as_deref(),
        Some("old.pstn.twilio.com")
    );
    let newer = create(a.clone(), serde_json::json!({"sip_trunk": "new.pstn.twilio.com"})).await;
    // Newer without a trunk does not hide the one that has it.
    let no_trunk = create(a.clone(), serde_json::json!({"account_sid": "AC1"})).await;
    assert_eq!(
        index.integration_trunk(&a, Provider::Twilio).as_deref(),
        Some("new.pstn.twilio.com")
    );
    assert_eq!(index.integration_trunk(&a, Provider::Telnyx), None);
    assert_eq!(index.integration_trunk(&b, Provider::Twilio), None);
    create(b.clone(), serde_json::json!({"sip_trunk": "b.pstn.twilio.com"})).await;
    assert_eq!(
        index.integration_trunk(&b, Provider::Twilio).as_deref(),
        Some("b.pstn.twilio.com")
    );

    // Deleting the newest falls back to the next one; a second node agrees after reload.
    fx.store.delete_integration(&a, &newer).await.unwrap();
    assert_eq!(
        index.integration_trunk(&a, Provider::Twilio).as_deref(),
        Some("old.pstn.twilio.com")
    );
    let again = Store::connect(fx.config.clone()).await.unwrap();
    assert_eq!(
        again.index().integration_trunk(&a, Provider::Twilio).as_deref(),
        Some("old.pstn.twilio.com")
    );
    fx.store.delete_integration(&a, &first).await.unwrap();
    fx.store.delete_integration(&a, &no_trunk).await.unwrap();
    assert_eq!(index.integration_trunk(&a, Provider::Twilio), None);
    again.reload_index().await.unwrap();
    assert_eq!(again.index().integration_trunk(&a, Provider::Twilio), None);
    assert_eq!(
        again.index().integration_trunk(&b, Provider::Twilio).as_deref(),
        Some("b.pstn.twilio.com")
    );
    again.close().await;
}
on_both_backends!(integration_trunks);
