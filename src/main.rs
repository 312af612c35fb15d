//! The `wsrooms` binary: flags and environment → [`Config`], logger, run.
//! (`wsrooms backup …` and `wsrooms restore …` are the two commands that do
//! not run the server: [`wsrooms::admin_cli`].)

use std::process::ExitCode;

use wsrooms::listeners::{Binds, Listeners};
use wsrooms::store::Store;
use wsrooms::{Config, Server, admin_cli};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if admin_cli::is_admin(&args) {
        return admin_cli::run(args);
    }
    let config = match Config::from_args(args) {
        Ok(config) => config,
        // A refused value (stderr, exit 2), or --help / --version (stdout, exit 0).
        Err(e) => e.exit(),
    };
    let level = config.log_level.parse().unwrap_or(log::LevelFilter::Info);
    let _ = simple_logger::SimpleLogger::new().with_level(level).init();
    log::info!("config: {}", config.summary());
    // First the data file, before any socket is bound or taken: a file that
    // is not ours (or not a regular file, or with a stray log beside it)
    // stops the server here with exit 2 and one line saying why, changed in
    // nothing, and no port was ever open to accept connections nobody would
    // answer. (Sockets passed in by the service manager are descriptors
    // 3, 4, … and already open, so the file cannot take their numbers.)
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let listeners = match Listeners::open(Binds::of(&config)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsrooms: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let mut server = match Server::with_listeners(config, listeners) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsrooms: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(store) = store
        && let Err(e) = server.use_store(store)
    {
        eprintln!("wsrooms: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = server.handle_signals() {
        eprintln!("wsrooms: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    // Tests and scripts read this line to learn the port (with --bind …:0).
    println!("wsrooms listening on http://{}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("poll loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The store of `--data-file`, if given; a refused file is reported on
/// stderr (one line) and gives exit code 2.
fn open_store(config: &Config) -> Result<Option<Store>, ExitCode> {
    let Some(path) = config.data_file.as_deref() else {
        return Ok(None);
    };
    match Store::open_with(path, &config.store_settings()) {
        Ok(store) => Ok(Some(store)),
        Err(e) => {
            eprintln!("wsrooms: {e}");
            Err(ExitCode::from(2))
        }
    }
}
