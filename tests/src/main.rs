//! `darkroom-host`: runs a Spin app with the test host, for machines without
//! the Spin CLI. Not a replacement for `spin up`; see the library docs for
//! what it does and does not reproduce.
//!
//! `darkroom-host [--from spin.toml] [--listen 127.0.0.1:3000] [--max-instance-memory BYTES]`
//! Variables come from `SPIN_VARIABLE_<NAME>` as with `spin up`.

use anyhow::{Context as _, bail};
use darkroom_tests::host::{HostConfig, RunningApp};

fn main() -> anyhow::Result<()> {
    let mut config = HostConfig::new("spin.toml");
    config.listen = "127.0.0.1:3000".parse()?;
    config.echo_guest_output = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--from" | "-f" => config.manifest = value()?.into(),
            "--listen" => config.listen = value()?.parse().context("--listen")?,
            "--max-instance-memory" => {
                config.max_instance_memory =
                    Some(value()?.parse().context("--max-instance-memory")?);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let app = RunningApp::start(&config)?;
    eprintln!("darkroom-host: serving http://{}", app.addr());
    app.wait();
    Ok(())
}
