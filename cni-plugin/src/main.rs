//! The binary a container runtime executes for every pod (CNI mode), or the DaemonSet runs once
//! per node (`nethouse-cni install`).

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("install") {
        let env = |k: &str| std::env::var(k).ok();
        let result = if args.get(1).map(String::as_str) == Some("--keep-token") {
            // The DaemonSet's main container: runs until SIGTERM.
            nethouse_cni::install::keep_token(&args[2..])
        } else {
            nethouse_cni::install::parse_args(&args[1..], &env).and_then(|a| {
                let exe = std::env::current_exe().map_err(|source| {
                    nethouse_cni::install::InstallError::LocateBinary { source }
                })?;
                nethouse_cni::install::install(&a, &exe)
            })
        };
        match result {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let env = std::env::vars().collect();
    // Network configs are a few KiB: one read instead of a doubling series.
    let mut stdin = Vec::with_capacity(16 * 1024);
    let out = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => nethouse_cni::run(&env, &stdin),
        Err(e) => nethouse_cni::Output {
            stdout: nethouse_cni::error::CniError::new(
                nethouse_cni::error::IO_FAILURE,
                format!("reading the network config from stdin: {e}"),
            )
            .to_json("1.1.0"),
            exit_code: 1,
        },
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.exit_code);
}
