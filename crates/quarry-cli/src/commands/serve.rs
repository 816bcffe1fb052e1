use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use quarry_server::{AppState, KeyStore, NewKey, Scope, ServerOptions};

use crate::args::{KeysCommand, ServeArgs};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &ServeArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = ServerOptions {
        auth: !args.no_auth,
        max_body_bytes: args.max_body_mb.max(1) << 20,
        max_inflight: args.max_inflight,
        ingest_queue: args.ingest_queue,
        request_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        rate_per_minute: args.rate_per_minute,
    };
    let embedder = settings.embedder()?;
    let state = AppState::open(&settings.data_dir, settings.config.clone(), embedder, opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        quarry_server::serve(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn keys(settings: &Settings, cmd: KeysCommand) -> Result<ExitCode> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let store = KeyStore::in_dir(&settings.data_dir)?;
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
            groups,
            json,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()?;
            let (key, rec) = store.create(NewKey {
                name,
                scopes,
                tenant,
                groups,
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "key": key, "record": public(&rec) }))?
                );
            } else {
                println!("{key}");
                eprintln!("key {} created; it is shown only now, store it safely", rec.id);
            }
        }
        KeysCommand::List { json } => {
            let keys = store.list()?;
            if json {
                let keys: Vec<_> = keys.iter().map(public).collect();
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    println!(
                        "{} {:<20} scopes={:?} tenant={} groups={}{}",
                        k.id,
                        k.name,
                        k.scopes,
                        k.tenant.as_deref().unwrap_or("*"),
                        k.groups.join(","),
                        if k.revoked { " (revoked)" } else { "" }
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            anyhow::ensure!(store.revoke(&id)?, "no key with id `{id}`");
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A key record without its salt and hash.
fn public(k: &quarry_server::KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": k.id, "name": k.name, "scopes": k.scopes, "tenant": k.tenant, "groups": k.groups,
        "created": k.created, "revoked": k.revoked,
    })
}
