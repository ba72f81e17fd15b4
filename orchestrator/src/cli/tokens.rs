//! API tokens: `apex tokens create` (a scoped token; its secret is printed this once),
//! `apex tokens list` and `apex tokens revoke`. All three need an admin token.
//!
//! `create` prints the secret alone on standard output, so `TOKEN=$(apex tokens create
//! …)` works; what it is and that it will not be shown again goes to standard error.

use super::client::{encode, Client, Connection};
use super::error::{CliError, Exit};
use super::output::{self, Cell, Printer, Table};
use super::shapes;
use crate::access::Scope;
use crate::api_types::Token;
use serde_json::json;

/// `apex tokens …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Create a token with a scope; prints its secret, which is shown only this once.
    Create(CreateArgs),
    /// List the tokens: name, scope, who created them, when last used (never secrets).
    List(ListArgs),
    /// Revoke a token: the server refuses it from now on.
    Revoke(RevokeArgs),
}

/// A scope, as `--scope` accepts it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    /// Every GET and the live stream.
    Read,
    /// Also submit and validate runs.
    Submit,
    /// Also cancel and retry runs.
    Operate,
    /// Also agents, tokens and the audit log.
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Submit => Scope::Submit,
            ScopeArg::Operate => Scope::Operate,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

/// Arguments of `apex tokens create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The token's name, recorded on everything it changes: 1–64 characters of
    /// `A-Za-z0-9._-`.
    #[arg(long)]
    pub name: String,
    /// What the token may do; each scope includes the ones before it.
    #[arg(long, value_enum)]
    pub scope: ScopeArg,
    /// Print the API's answer as JSON (the Token with its `token` secret).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex tokens list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the API's answer as JSON: `{"tokens": [Token]}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// Arguments of `apex tokens revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's name (`apex tokens list` lists them).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub conn: Connection,
}

/// `apex tokens create | list | revoke`.
pub async fn tokens(command: TokensCommand, out: &mut Printer) -> Result<Exit, CliError> {
    match command {
        TokensCommand::Create(args) => create(&args, out).await,
        TokensCommand::List(args) => list(&args, out).await,
        TokensCommand::Revoke(args) => revoke(&args, out).await,
    }
}

/// `apex tokens create --name NAME --scope SCOPE`.
async fn create(args: &CreateArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let scope = Scope::from(args.scope);
    let body = json!({"name": args.name, "scope": scope});
    let created = client
        .post("/api/v1/tokens", Some(body.to_string().into_bytes()))
        .await?;
    if args.json {
        out.json(&created)?;
        return Ok(Exit::Ok);
    }
    let secret = created["token"]
        .as_str()
        .ok_or_else(|| client.unexpected("the answer has no token secret".into()))?;
    out.line(secret)?;
    anstream::eprintln!(
        "created token {} with scope {scope}; this is the only time its secret is shown, so keep it now",
        output::bold(&args.name)
    );
    Ok(Exit::Ok)
}

/// `apex tokens list`.
async fn list(args: &ListArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    let body = client.get("/api/v1/tokens").await?;
    if args.json {
        out.json(&body)?;
        return Ok(Exit::Ok);
    }
    let tokens: Vec<Token> =
        shapes::parse(&body["tokens"], "tokens").map_err(|m| client.unexpected(m))?;
    if tokens.is_empty() {
        out.line("no tokens; create one with `apex tokens create --name NAME --scope read`")?;
        return Ok(Exit::Ok);
    }
    out.block(&tokens_table(&tokens))?;
    Ok(Exit::Ok)
}

/// The `apex tokens list` table.
fn tokens_table(tokens: &[Token]) -> String {
    let mut table = Table::new(&["NAME", "SCOPE", "CREATED BY", "CREATED", "LAST USED"]);
    for t in tokens {
        table.row(vec![
            Cell::plain(&t.name),
            Cell::plain(t.scope.as_str()),
            Cell::plain(&t.created_by),
            Cell::plain(output::ago(Some(t.created_at_ms))),
            Cell::plain(
                t.last_used_at_ms
                    .map_or("never".into(), |at| output::ago(Some(at))),
            ),
        ]);
    }
    table.render()
}

/// `apex tokens revoke NAME`.
async fn revoke(args: &RevokeArgs, out: &mut Printer) -> Result<Exit, CliError> {
    let client = Client::new(&args.conn)?;
    client
        .delete(&format!("/api/v1/tokens/{}", encode(&args.name)))
        .await
        .map_err(|e| e.with_not_found_hint("check the name; `apex tokens list` lists tokens"))?;
    out.line(&format!("revoked token {}", args.name))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_never_for_unused_tokens() {
        let t = |name: &str, last| Token {
            name: name.into(),
            scope: Scope::Read,
            created_by: "admin".into(),
            created_at_ms: output::now_ms() - 3_600_000,
            last_used_at_ms: last,
        };
        let table = tokens_table(&[t("ci", None), t("deploy", Some(output::now_ms()))]);
        let text = anstream::adapter::strip_str(&table).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].starts_with("ci") && lines[1].ends_with("never"),
            "{text}"
        );
        assert!(lines[2].contains("admin"), "{text}");
    }
}
