//! The password when the URL gives none, found where libpq (and so `psql`) finds it: the
//! `PGPASSWORD` variable, then the password file (`PGPASSFILE`, else `~/.pgpass`), so that a
//! team's configuration file can name the server without holding a secret.
//!
//! The file's lines are `host:port:database:user:password`, any of the first four `*`,
//! `\:` and `\\` escaping; the first line that matches wins. As libpq does, a file that its
//! group or others may read is ignored.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// Fill in `config`'s password from the environment or the password file when it has none.
pub(super) fn fill_password(config: &mut Config) {
    if config.get_password().is_some() {
        return;
    }
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(password.as_encoded_bytes());
        return;
    }
    let Some(user) = config.get_user().map(str::to_string) else {
        return;
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        // libpq matches a socket connection as "localhost".
        Some(Host::Unix(_)) | None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let Some(text) = password_file().and_then(|path| std::fs::read_to_string(path).ok()) else {
        return;
    };
    if let Some(password) = lookup(&text, [&host, &port, &database, &user]) {
        config.password(password);
    }
}

/// The password file, when it exists and only its owner may read it.
fn password_file() -> Option<PathBuf> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = std::fs::metadata(&path).ok()?;
    (meta.is_file() && meta.mode() & 0o077 == 0).then_some(path)
}

/// The password of the first line whose four fields match `wanted` (see the module docs).
fn lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(fields)
        .find(|fields| {
            fields.len() == 5
                && fields
                    .iter()
                    .zip(wanted)
                    .all(|(field, want)| field == "*" || field == want)
        })
        .and_then(|mut fields| fields.pop())
}

/// A line split at its unescaped colons, escapes removed.
fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let text = "# comment\n\
                    other:5432:*:alice:nope\n\
                    db.example:5432:reg:alice:s3cr\\:et\\\\x\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            lookup(text, ["db.example", "5432", "reg", "alice"]).as_deref(),
            Some("s3cr:et\\x")
        );
        assert_eq!(
            lookup(text, ["db.example", "5433", "reg", "alice"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(lookup("h:1:d:u\n", ["h", "1", "d", "u"]), None);
        // A password may hold unescaped colons after the fourth.
        assert_eq!(
            lookup("h:1:d:u:a:b", ["h", "1", "d", "u"]).as_deref(),
            Some("a:b")
        );
    }
}
