//! `darkroom-host`: runs a Spin app with the test host, for machines without
//! the Spin CLI. Not a replacement for `spin up`; see the library docs for
//! what it does and does not reproduce.
//!
//! `darkroom-host [--from spin.toml] [--listen 127.0.0.1:3000] [-c COMPONENT]...
//! [--state-dir DIR] [--runtime-config-file FILE] [--max-instance-memory BYTES]`
//!
//! The flags mean what they mean to `spin up`. Variables come from
//! `SPIN_VARIABLE_<NAME>`. Like `spin up`, the process exits with an error
//! when a trigger ends (a Redis trigger that lost its connection), so a
//! supervisor can restart it.

use anyhow::{Context as _, bail};
use darkroom_tests::host::{HostConfig, Listen, RunningApp};

fn main() -> anyhow::Result<()> {
    let mut config = HostConfig::new("spin.toml");
    config.listen = Listen::Default("127.0.0.1:3000".parse()?);
    config.echo_guest_output = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--from" | "-f" => config.manifest = value()?.into(),
            "--listen" => config.listen = Listen::Explicit(value()?.parse().context("--listen")?),
            "-c" | "--component-id" => config
                .components
                .get_or_insert_with(Vec::new)
                .push(value()?),
            "--state-dir" => config.state_dir = Some(value()?.into()),
            "--runtime-config-file" => config.runtime_config = Some(value()?.into()),
            "--max-instance-memory" => {
                config.max_instance_memory =
                    Some(value()?.parse().context("--max-instance-memory")?);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if config.state_dir.is_none() {
        // `spin up` keeps a local app's state in `.spin` next to its manifest.
        let app_dir = config
            .manifest
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."));
        config.state_dir = Some(app_dir.join(".spin"));
    }
    let app = RunningApp::start(&config)?;
    match app.addr() {
        Some(addr) => eprintln!("darkroom-host: serving http://{addr}"),
        None => eprintln!("darkroom-host: no HTTP trigger; listening on the Redis trigger only"),
    }
    // As `spin up` does when a trigger ends: say why, exit with an error.
    let reason = app.wait();
    eprintln!("{reason}");
    std::process::exit(1)
}
