//! `ssl.principal.mapping.rules`: Kafka's rules that turn a client certificate's subject
//! (RFC 2253, `CN=alice,OU=eng,O=Example`) into the principal's name, as Kafka's
//! `SslPrincipalMapper` does.
//!
//! Syntax: a comma-separated list of `DEFAULT` (the subject unchanged) and
//! `RULE:pattern/replacement/` with an optional `L` or `U` after the last slash (lower- or
//! upper-case the result); `\/` escapes a slash inside the pattern or the replacement. The
//! rules are tried in order: the first whose pattern matches the *whole* subject gives the
//! name (every match replaced, as Java's `replaceAll`); when none matches, the connection is
//! refused. The rules are split and parsed with Kafka's own regular expressions, so what
//! Kafka accepts or rejects, so does Strom.
//!
//! Known difference: the patterns are compiled by Rust's `regex` crate, not Java's engine;
//! the usual constructs (groups, classes, lazy quantifiers, anchors) behave the same, but
//! look-around and back-references inside a pattern are refused at startup.

use std::fmt;

use regex::Regex;

/// Kafka's rule grammar: `DEFAULT`, `RULE:pattern/replacement/[LU]`, or anything else (an
/// invalid rule, unless empty).
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern as written, for messages.
        source: String,
        /// The pattern anchored at both ends: must match the whole subject.
        whole: Regex,
        /// The pattern as written, for the replacement of every match.
        each: Regex,
        /// The replacement in the `regex` crate's syntax (`${1}`, `$$` for a dollar).
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
    /// The setting as given, for messages.
    text: String,
}

impl Default for PrincipalMapper {
    fn default() -> Self {
        PrincipalMapper {
            rules: vec![Rule::Default],
            text: "DEFAULT".into(),
        }
    }
}

impl fmt::Display for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// No rule matched the subject: Kafka refuses the connection (`NoMatchingRule`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("No rules apply to {subject}, rules [{rules}]")]
pub struct NoMatchingRule {
    pub subject: String,
    pub rules: String,
}

impl PrincipalMapper {
    pub fn parse(setting: &str) -> Result<PrincipalMapper, String> {
        // Both expressions are constant and known to compile.
        let splitter = Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)")).expect("valid");
        let parser = Regex::new(&format!(r"\A(?:{RULE_PATTERN})")).expect("valid");
        let mut rules = Vec::new();
        for found in splitter.captures_iter(setting.trim()) {
            let rule = found.get(1).map_or("", |m| m.as_str());
            let parsed = parser
                .captures(rule)
                .ok_or_else(|| format!("Invalid rule: {rule}"))?;
            let end = parsed.get(0).map_or(0, |m| m.end());
            if end != rule.len() {
                return Err(format!(
                    "Invalid rule: `{rule}`, unmatched substring: `{}`",
                    &rule[end..]
                ));
            }
            if parsed.get(1).is_some() {
                rules.push(Rule::Default);
            } else if let Some(pattern) = parsed.get(2) {
                let replacement = parsed.get(4).map_or("", |m| m.as_str());
                let case = match parsed.get(6).map(|m| m.as_str()) {
                    Some("L") => Case::Lower,
                    Some("U") => Case::Upper,
                    _ => Case::Keep,
                };
                rules.push(replace_rule(pattern.as_str(), replacement, case)?);
            }
            // Empty rules are ignored, as in Kafka.
        }
        Ok(PrincipalMapper {
            rules,
            text: setting.trim().to_string(),
        })
    }

    /// The principal name for a certificate subject in RFC 2253 form.
    pub fn name(&self, subject: &str) -> Result<String, NoMatchingRule> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(subject.to_string()),
                Rule::Replace {
                    whole,
                    each,
                    replacement,
                    case,
                    ..
                } => {
                    if !whole.is_match(subject) {
                        continue;
                    }
                    let name = each.replace_all(subject, replacement.as_str());
                    return Ok(match case {
                        Case::Keep => name.into_owned(),
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(NoMatchingRule {
            subject: subject.to_string(),
            rules: self.describe(),
        })
    }

    fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|r| match r {
                Rule::Default => "DEFAULT".to_string(),
                Rule::Replace { source, .. } => format!("RULE:{source}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn replace_rule(pattern: &str, replacement: &str, case: Case) -> Result<Rule, String> {
    let compile = |p: &str| {
        Regex::new(p).map_err(|e| format!("ssl.principal.mapping.rules pattern {pattern:?}: {e}"))
    };
    let each = compile(pattern)?;
    let whole = compile(&format!(r"\A(?:{pattern})\z"))?;
    let groups = each.captures_len() - 1;
    let replacement = java_replacement(replacement, groups)?;
    Ok(Rule::Replace {
        source: pattern.to_string(),
        whole,
        each,
        replacement,
        case,
    })
}

/// Java's `replaceAll` replacement syntax in the `regex` crate's: `\x` is a literal `x`,
/// `$n` a group (digits taken while they name a group, as Java reads them), `${name}` a
/// named group. A `$n` beyond the pattern's groups is literal text, as Kafka's rule
/// escaping makes it (it comes from NiFi); with no groups at all, any `$n` is refused
/// here, where Java would fail on every connection.
fn java_replacement(replacement: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(replacement.len() + 8);
    let chars: Vec<char> = replacement.chars().collect();
    let mut i = 0;
    let literal = |out: &mut String, c: char| {
        if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    };
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let c = *chars
                    .get(i + 1)
                    .ok_or("character to be escaped is missing at the end of the replacement")?;
                literal(&mut out, c);
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let close = chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("named group reference is missing its trailing '}'")?;
                let name: String = chars[i + 2..i + close].iter().collect();
                out.push_str(&format!("${{{name}}}"));
                i += close + 1;
            }
            '$' => {
                let digits: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if digits.is_empty() {
                    return Err(format!(
                        "illegal group reference in replacement {replacement:?}"
                    ));
                }
                if groups == 0 {
                    return Err(format!(
                        "replacement {replacement:?} refers to a group, but the pattern has none"
                    ));
                }
                // Kafka's escaping: a reference beyond the groups (after dropping trailing
                // digits down to two) is literal; Java then reads the longest prefix of
                // the digits that names a group.
                let mut wanted: usize = digits.parse().unwrap_or(usize::MAX);
                while wanted > groups && wanted >= 10 {
                    wanted /= 10;
                }
                if !digits.starts_with('0') && wanted > groups {
                    out.push_str("$$");
                    i += 1;
                    continue;
                }
                let mut group = 0usize;
                let mut used = 0;
                for d in digits.chars() {
                    let next = group * 10 + d.to_digit(10).unwrap_or(0) as usize;
                    if used > 0 && next > groups {
                        break;
                    }
                    group = next;
                    used += 1;
                }
                out.push_str(&format!("${{{group}}}"));
                i += 1 + used;
            }
            c => {
                literal(&mut out, c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(rules: &str) -> PrincipalMapper {
        PrincipalMapper::parse(rules).unwrap()
    }

    // The cases of Kafka's SslPrincipalMapperTest.
    #[test]
    fn kafkas_valid_and_invalid_rules() {
        for ok in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            assert!(PrincipalMapper::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kafkas_mapping_examples() {
        let m = mapper(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        );
        assert_eq!(
            m.name("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(),
            "duke"
        );
        assert_eq!(
            m.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US").unwrap(),
            "duke@sme"
        );
        assert_eq!(m.name("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(), "DUKE@SME");
        assert_eq!(
            m.name("cN=duke,OU=JavaSoft,O=Sun Microsystems").unwrap(),
            "DUKE"
        );
        assert_eq!(
            m.name("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
    }

    #[test]
    fn an_escaped_comma_inside_a_pattern_and_empty_rules() {
        let m = mapper(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT");
        assert_eq!(
            m.name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz").unwrap(),
            r"Tkac\, Adam"
        );
        assert!(mapper(",   , , ,      , , ,   ").rules.is_empty());
        assert_eq!(mapper(",,RULE://,,,DEFAULT,,").rules.len(), 2);
    }

    #[test]
    fn no_matching_rule_is_an_error_and_default_is_the_default() {
        let m = mapper("RULE:^CN=([a-z]+),O=Strom$/$1/");
        assert_eq!(m.name("CN=carol,O=Strom").unwrap(), "carol");
        let err = m.name("CN=mallory,O=Evil").unwrap_err();
        assert_eq!(err.subject, "CN=mallory,O=Evil");
        assert_eq!(
            PrincipalMapper::default().name("CN=x,O=y").unwrap(),
            "CN=x,O=y"
        );
    }

    #[test]
    fn java_replacement_syntax() {
        assert_eq!(java_replacement("$1@$2", 2).unwrap(), "${1}@${2}");
        // $12 with one group: group 1 then a literal 2, as Java reads it.
        assert_eq!(java_replacement("$12", 1).unwrap(), "${1}2");
        // A reference beyond the groups stays literal (Kafka's escaping).
        assert_eq!(java_replacement("$1@$4", 3).unwrap(), "${1}@$$4");
        assert_eq!(java_replacement(r"a\$b\\", 1).unwrap(), r"a$$b\");
        assert!(java_replacement("$1", 0).is_err());
        let m = mapper(r"RULE:^CN=([a-z]+)\/x$/$1-\$/");
        assert_eq!(m.name("CN=abc/x").unwrap(), "abc-$");
    }
}
