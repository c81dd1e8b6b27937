//! `token create|list|revoke`: per-agent credentials, managed through the coordinator with the
//! client token (like `agents`). The secret is printed once, by `create`, and never again.

use std::time::{Duration, UNIX_EPOCH};

use phasegate_proto::pb;

use crate::cli::{JsonArg, TokenCreateArgs, TokenRevokeArgs};
use crate::connect::Endpoint;
use crate::exit::{Code, Failure, Result};

fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn token_text(t: &pb::AgentToken) -> String {
    format!(
        "{:>4}  {:<24} created {}  last used {}  revoked {}",
        t.id,
        t.agent_name,
        when(t.created_ms),
        when(t.last_used_ms),
        when(t.revoked_ms)
    )
}

fn token_json(t: &pb::AgentToken) -> serde_json::Value {
    let opt = |ms: i64| if ms > 0 { serde_json::Value::from(ms) } else { serde_json::Value::Null };
    serde_json::json!({
        "id": t.id,
        "agent": t.agent_name,
        "created_ms": t.created_ms,
        "last_used_ms": opt(t.last_used_ms),
        "revoked_ms": opt(t.revoked_ms),
    })
}

pub async fn create(args: TokenCreateArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let resp = client
        .create_agent_token(pb::CreateAgentTokenRequest { agent_name: args.agent.clone() })
        .await
        .map_err(|s| {
            Failure::from_status(
                &format!("failed to create a credential for agent {}", phasegate_proto::redact::shown(&args.agent)),
                &s,
            )
        })?
        .into_inner();
    let id = resp.token.map(|t| t.id).unwrap_or_default();
    // The secret alone on stdout, so `phasegate token create --agent X > token-file` works.
    println!("{}", resp.secret);
    eprintln!("credential {id} for agent {}: shown once; give it to the agent with --token-file", args.agent);
    Ok(Code::Success)
}

pub async fn list(args: JsonArg, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let tokens = client
        .list_agent_tokens(pb::ListAgentTokensRequest {})
        .await
        .map_err(|s| Failure::from_status("failed to list agent credentials", &s))?
        .into_inner()
        .tokens;
    if args.json {
        let all = serde_json::Value::Array(tokens.iter().map(token_json).collect());
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else if tokens.is_empty() {
        println!("no agent credentials");
    } else {
        for t in &tokens {
            println!("{}", token_text(t));
        }
    }
    Ok(Code::Success)
}

pub async fn revoke(args: TokenRevokeArgs, endpoint: &Endpoint) -> Result<Code> {
    let mut client = endpoint.control()?;
    let revoked = client
        .revoke_agent_token(pb::RevokeAgentTokenRequest { name_or_id: args.target.clone() })
        .await
        .map_err(|s| {
            Failure::from_status(
                &format!("failed to revoke agent credential {}", phasegate_proto::redact::shown(&args.target)),
                &s,
            )
        })?
        .into_inner()
        .revoked;
    for t in &revoked {
        println!("revoked credential {} of agent {}", t.id, t.agent_name);
    }
    Ok(Code::Success)
}
