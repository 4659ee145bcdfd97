//! Local console accounts: `certops user add NAME` stores an argon2id hash of
//! a password read from the terminal (or stdin), never from argv, in
//! `<data-dir>/console-users.json` (0600). Sign-in verifies against it.

use anyhow::{bail, Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The accounts file inside the data directory.
pub const USERS_FILE: &str = "console-users.json";
/// The shortest password `user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// One account: the identity is its name (the approver identity), the hash a PHC string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Argon2id PHC string (`$argon2id$v=19$…`).
    pub hash: String,
    /// When the account was added or its password last set.
    pub set_at: chrono::DateTime<chrono::Utc>,
}

/// The accounts file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Accounts {
    /// Name → account.
    pub users: BTreeMap<String, Account>,
}

/// Where the accounts of a data directory live.
pub fn users_path(data_dir: &Path) -> PathBuf {
    data_dir.join(USERS_FILE)
}

/// Reads the accounts (none when the file is absent).
pub fn load(data_dir: &Path) -> Result<Accounts> {
    let path = users_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a console accounts file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the accounts atomically with mode 0600.
fn save(data_dir: &Path, accounts: &Accounts) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = users_path(data_dir);
    let tmp = data_dir.join(format!(".{USERS_FILE}.{}", uuid::Uuid::new_v4().simple()));
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(accounts)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A valid account name: an identity such as an e-mail address, no spaces or controls.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+".contains(c))
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Whether `password` matches the stored PHC hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Adds (or replaces the password of) an account.
pub fn add(data_dir: &Path, name: &str, password: &str) -> Result<bool> {
    if !valid_name(name) {
        bail!("'{name}' is not a valid account name (letters, digits and @ . _ - + only)");
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    let mut accounts = load(data_dir)?;
    let existed = accounts
        .users
        .insert(
            name.to_string(),
            Account {
                hash: hash_password(password)?,
                set_at: chrono::Utc::now(),
            },
        )
        .is_some();
    save(data_dir, &accounts)?;
    Ok(existed)
}

/// Options of `certops user`.
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand, Debug)]
enum UserCommand {
    /// Add a console account (or set its password). The password is read from
    /// the terminal (asked twice), or as one line from stdin when not a terminal.
    Add {
        /// The identity, e.g. cab-alice@example.com; it is who approves when signed in.
        name: String,
    },
    /// List console accounts (names only).
    List,
}

/// Reads the password without echo from a terminal, else one line of stdin.
fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("again:    ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// Runs `certops user …`.
pub fn run(data_dir: &Path, args: UserArgs) -> Result<u8> {
    match args.command {
        UserCommand::Add { name } => {
            let password = read_password()?;
            let existed = add(data_dir, &name, &password)?;
            eprintln!(
                "{} console account {name} in {}",
                if existed { "updated" } else { "added" },
                users_path(data_dir).display()
            );
            Ok(0)
        }
        UserCommand::List => {
            for name in load(data_dir)?.users.keys() {
                outln!("{name}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn added_accounts_verify_only_their_password_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!add(dir.path(), "alice@example.com", "correct horse battery").unwrap());
        let accounts = load(dir.path()).unwrap();
        let hash = &accounts.users["alice@example.com"].hash;
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(hash, "correct horse battery"));
        assert!(!verify_password(hash, "correct horse battery "));
        let mode = std::fs::metadata(users_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(add(dir.path(), "alice@example.com", "another long password").unwrap());
    }

    #[test]
    fn bad_names_and_short_passwords_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(add(dir.path(), "two words", "long enough password").is_err());
        assert!(add(dir.path(), "bob", "short").is_err());
        assert!(load(dir.path()).unwrap().users.is_empty());
    }
}
