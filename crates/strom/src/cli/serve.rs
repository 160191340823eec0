//! `strom serve`: run the broker. Settings come from defaults, `--config FILE` (TOML),
//! `STROM_<NAME>` environment variables, then the flags and `--set name=value` (which win).
//! SIGINT/SIGTERM shut down gracefully; a second signal exits at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strom_broker::{Broker, ConfigBuilder};
use strom_server::ShutdownController;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the Kafka listener [setting: listen, default 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Where topics are stored [setting: data.dir, default ./kafka_data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address clients are told to connect to [setting: advertised.listener, default: --listen].
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Also serve the JSON-over-TCP protocol here [setting: json.listen, default off].
    #[arg(long, value_name = "HOST:PORT")]
    json_listen: Option<String>,
    /// When produces are fsynced: acks-all (default), always, never [setting: log.fsync].
    #[arg(long, value_name = "POLICY")]
    fsync: Option<String>,
    /// A TOML file of settings.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any setting, e.g. --set log.retention.ms=60000 (repeatable; wins over everything).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = ConfigBuilder::new();
    if let Some(path) = &args.config {
        builder.load_toml_file(path)?;
    }
    builder.load_env()?;
    let flags = [
        ("listen", args.listen.clone()),
        (
            "data.dir",
            args.data_dir.as_ref().map(|d| d.display().to_string()),
        ),
        ("advertised.listener", args.advertised_listener.clone()),
        ("json.listen", args.json_listen.clone()),
        ("log.fsync", args.fsync.clone()),
    ];
    for (name, value) in flags {
        if let Some(v) = value {
            builder.set(name, &v, &format!("--{}", name.replace('.', "-")))?;
        }
    }
    for pair in &args.set {
        builder.set_pair(pair)?;
    }
    let config = builder.build()?;
    strom_broker::metrics::METRICS.configure(config.metrics_enabled);

    // The HTTP listener comes first, so /health answers (and /ready says not yet) while the
    // data directory is recovered.
    let http_listener =
        strom_server::http::bind(config.http_listen, config.http_listen_explicit).await?;
    let controller = ShutdownController::new();
    let http_state = strom_server::http::HttpState::new(
        strom_server::http::auth::Login::from_settings(&config.security),
    );
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let http_tls = if config.security.http.tls {
        Some(strom_server::http::Tls {
            acceptor: strom_server::tls::http_acceptor(&config.security)
                .context("HTTPS listener (http.listener.security.protocol=SSL)")?,
            handshake_timeout: Duration::from_millis(config.security.handshake_timeout_ms),
        })
    } else {
        None
    };
    // Basic credentials over plain HTTP can be read on the way: say so when other hosts
    // can reach the listener.
    if let Some(addr) = http_addr
        .filter(|a| config.security.http_basic() && http_tls.is_none() && !a.ip().is_loopback())
    {
        tracing::warn!(http = %addr, "the HTTP listener takes passwords over plain HTTP; set http.listener.security.protocol=SSL");
    }
    let http = http_listener.map(|l| {
        tokio::spawn(strom_server::http::serve(
            l,
            http_state.clone(),
            config.http_max_connections,
            http_tls,
            controller.subscribe(),
        ))
    });
    let mut kafka_listeners = Vec::with_capacity(config.listeners.len());
    for spec in &config.listeners {
        let socket = tokio::net::TcpListener::bind(spec.bind)
            .await
            .with_context(|| format!("cannot listen on {} ({})", spec.bind, spec.name))?;
        kafka_listeners.push((socket, spec.clone()));
    }
    let json_tls = config.json_listen.is_some() && config.json_security_protocol.uses_tls();
    let tls = if json_tls || config.listeners.iter().any(|l| l.protocol.uses_tls()) {
        Some(
            strom_server::tls_reload::ReloadableAcceptor::new(&config.security)
                .context("TLS listener")?,
        )
    } else {
        None
    };
    let json_listener = match config.json_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for JSON on {addr}"))?,
        ),
        None => None,
    };
    let broker = Broker::open(config.clone())?;
    if config.clustered() {
        strom_broker::cluster::start(&broker)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start cluster mode: {e}"))?;
    }
    let listening: Vec<String> = kafka_listeners
        .iter()
        .map(|(socket, spec)| {
            let bound = socket.local_addr().map_or(spec.bind, |a| a);
            format!(
                "{}://{bound} (advertised {}:{})",
                spec.name, spec.advertised_host, spec.advertised_port
            )
        })
        .collect();
    // `listen` (the first listener's address) stays for log shippers that read it.
    let first = kafka_listeners
        .first()
        .and_then(|(socket, _)| socket.local_addr().ok())
        .map_or_else(|| config.listen.to_string(), |a| a.to_string());
    tracing::info!(
        listen = %first,
        listeners = %listening.join(", "),
        json = %json_listener.as_ref().and_then(|l| l.local_addr().ok()).map_or("off".to_string(), |a| a.to_string()),
        http = %http_addr.map_or("off".to_string(), |a| a.to_string()),
        data_dir = %config.data_dir.display(),
        fsync = ?config.fsync,
        "strom broker started"
    );

    let limits = strom_server::kafka::Limits::from_broker(&broker);
    // One in-process API for both listeners, so a JSON consumer or group member is the same
    // whichever port its connections use.
    let local_api = Arc::new(strom_broker::local::Local::new(broker.clone()));
    let kafka: Vec<_> = kafka_listeners
        .into_iter()
        .map(|(socket, spec)| {
            tokio::spawn(strom_server::kafka::serve_listener(
                socket,
                spec,
                tls.clone(),
                local_api.clone(),
                limits.clone(),
                controller.subscribe(),
            ))
        })
        .collect();
    let json = json_listener.map(|l| {
        let json_limits = strom_server::json::Limits::from_broker(&broker);
        let json_security = strom_server::json::ListenerSecurity {
            protocol: config.json_security_protocol,
            tls: tls.clone(),
            handshake_timeout: Duration::from_millis(config.security.handshake_timeout_ms),
        };
        tokio::spawn(strom_server::json::serve_with(
            l,
            local_api.clone(),
            json_limits,
            json_security,
            controller.subscribe(),
        ))
    });

    if let Some(tls) = &tls {
        let every = config.security.reload_check_interval_ms;
        tokio::spawn(strom_server::tls_reload::watch(
            tls.clone(),
            (every > 0).then(|| Duration::from_millis(every)),
            controller.subscribe(),
        ));
    }
    http_state.set_ready(local_api.clone());

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    broker.begin_shutdown();
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting at once");
        std::process::exit(130);
    });
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    if tokio::time::timeout(grace, controller.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after {grace:?}; closing them");
    }
    for listener in kafka {
        listener.abort();
    }
    if let Some(j) = json {
        j.abort();
    }
    if let Some(h) = http {
        h.abort();
    }
    broker.shutdown().await;
    tracing::info!("broker stopped; data flushed");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
