//! NATS subjects: validation, and the mapping from the MQTT topic layout.
//!
//! | MQTT | NATS | |
//! |---|---|---|
//! | `req/{shard}` (`REQ_TOPIC_PREFIX=req`) | `req.{shard}` | level separator `/` becomes `.` |
//! | `req/+` (`MQTT_SUB`) | `req.*` | one-level wildcard |
//! | `req/#` | `req.>` | multi-level wildcard (last level only) |
//! | `$share/{SHARE_GROUP}/req/+` | `SUB req.* {SHARE_GROUP}` | a queue group, not part of the subject |
//! | `resp/{INSTANCE_ID}/{n}` | `resp.{INSTANCE_ID}.{n}` | `INSTANCE_ID` as one token ([`token`]) |
//!
//! A name already written the NATS way (`req.*`) maps to itself, so either spelling works.

use crate::cli::ConfigError;

/// Whether a subject is published to or subscribed to (wildcards allowed).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Use {
    Publish,
    Subscribe,
}

/// Checks a subject: non-empty tokens separated by `.`, no whitespace or control characters;
/// for subscriptions `*` may stand for a token and `>` for the last ones.
pub fn check(subject: &str, usage: Use) -> Result<(), String> {
    if subject.is_empty() {
        return Err("empty subject".into());
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "subject '{subject}' contains {c:?}; NATS subjects have no whitespace"
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!(
                "subject '{subject}' has an empty token (leading, trailing or double '.')"
            ));
        }
        let wildcard = *t == "*" || *t == ">";
        if wildcard && usage == Use::Publish {
            return Err(format!(
                "subject '{subject}' has a wildcard; a message is published to a literal subject"
            ));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(format!("subject '{subject}': '>' must be the last token"));
        }
    }
    Ok(())
}

/// Maps an MQTT topic or filter to a NATS subject (`/` → `.`, `+` → `*`, `#` → `>`) and checks
/// the result.
pub fn from_mqtt(topic: &str, usage: Use) -> Result<String, String> {
    let mapped: Vec<&str> = topic
        .split('/')
        .map(|level| match level {
            "+" => "*",
            "#" => ">",
            other => other,
        })
        .collect();
    let subject = mapped.join(".");
    check(&subject, usage).map_err(|e| format!("'{topic}' maps to NATS {e}"))?;
    Ok(subject)
}

/// Start-up check of a setting that becomes a subject: the subject it maps to, or an error
/// naming the variable (exit status 2).
pub fn check_setting(var: &'static str, topic: &str, usage: Use) -> Result<String, ConfigError> {
    from_mqtt(topic, usage).map_err(|e| ConfigError::new(var, e))
}

/// `s` as a single literal token: `.`, wildcards and whitespace become `_` (for an
/// `INSTANCE_ID` such as a fully qualified host name inside `resp.{INSTANCE_ID}.{n}`).
pub fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_mqtt_layout() {
        assert_eq!(from_mqtt("req", Use::Publish).unwrap(), "req");
        assert_eq!(from_mqtt("req/7", Use::Publish).unwrap(), "req.7");
        assert_eq!(from_mqtt("req/+", Use::Subscribe).unwrap(), "req.*");
        assert_eq!(from_mqtt("a/b/#", Use::Subscribe).unwrap(), "a.b.>");
        // already NATS-style: unchanged
        assert_eq!(from_mqtt("req.*", Use::Subscribe).unwrap(), "req.*");
        assert_eq!(from_mqtt("req.>", Use::Subscribe).unwrap(), "req.>");
    }

    #[test]
    fn rejects_what_nats_cannot_carry() {
        for (bad, usage) in [
            ("", Use::Publish),
            ("/req", Use::Publish),
            ("req//1", Use::Publish),
            ("req/", Use::Subscribe),
            ("req/+", Use::Publish),
            ("a b/1", Use::Publish),
            ("a/#/b", Use::Subscribe),
            ("tab\there", Use::Subscribe),
        ] {
            assert!(from_mqtt(bad, usage).is_err(), "{bad:?} {usage:?}");
        }
        assert!(check("req.>.x", Use::Subscribe).is_err());
        assert!(check("req.*", Use::Publish).is_err());
        assert!(check("req.*", Use::Subscribe).is_ok());
    }

    #[test]
    fn settings_are_checked_naming_the_variable() {
        assert_eq!(
            check_setting("MQTT_SUB", "req/+", Use::Subscribe).unwrap(),
            "req.*"
        );
        let e = check_setting("INSTANCE_ID", "resp/my host/0", Use::Publish).unwrap_err();
        assert_eq!(e.var, "INSTANCE_ID");
        assert!(e.to_string().contains("my host"), "{e}");
    }

    #[test]
    fn token_makes_one_literal_token() {
        assert_eq!(token("host-1.example.com"), "host-1_example_com");
        assert_eq!(token("a*b>c d"), "a_b_c_d");
        assert_eq!(token(""), "_");
        let subject = format!("resp.{}.3", token("x.y z"));
        assert!(check(&subject, Use::Publish).is_ok());
        assert_eq!(subject.split('.').count(), 3);
    }
}
