//! Each zone's subnet added as an operator adds it once NetHouse runs: `nethouse subnet add`
//! with the controller token and NetHouse's CA, against NetHouse's address on its node.

use std::process::Command;

use super::super::fabric::Zone;
use super::super::netns::run;
use super::secrets::Credentials;
use crate::binaries::workspace_bin;

/// `server`: e.g. `https://10.61.1.10:7420`. Pods get the zone's gateway as default route; the
/// gateway and the node addresses are never handed out.
pub fn add(server: &str, creds: &Credentials, zones: &[Zone]) -> anyhow::Result<()> {
    let cli = workspace_bin("nethouse")?;
    for z in zones {
        let gw = z.gateway().to_string();
        run(Command::new(&cli)
            .env("NETHOUSE_SERVER", server)
            .env("NETHOUSE_TOKEN_FILE", &creds.controller_token)
            .env("NETHOUSE_CA_FILE", &creds.ca)
            .args(["subnet", "add", "--zone", &z.name, "--cidr", &z.cidr()])
            .args(["--gateway", &gw, "--exclude", &z.reserved()])
            .args(["--route", &format!("0.0.0.0/0,{gw}")]))?;
    }
    Ok(())
}
