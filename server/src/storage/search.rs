//! Full-text search rules shared by both backends (api.md §3.9), so they agree exactly.
//!
//! The application writes a normalised copy of every message (`messages.search_text`: its tokens
//! joined by single spaces); SQLite indexes it with FTS5's `ascii` tokenizer and PostgreSQL with
//! `array_to_tsvector(string_to_array(…, ' '))`. Neither parser nor stemmer sees the raw text.

/// Tokens longer than this are not indexed and never match.
pub const MAX_TOKEN_CHARS: usize = 64;
/// Longest accepted query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most distinct terms in one query.
pub const MAX_TERMS: usize = 16;

/// The tokens of a text: maximal runs of alphanumeric characters, lowercased.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase)
}

/// The normalised copy that is indexed: every token of at most [`MAX_TOKEN_CHARS`] characters,
/// joined by single spaces. Lowercasing can produce non-alphanumeric characters (combining marks);
/// they stay inside their token, exactly as the query side tokenises them.
pub fn normalise(content: &str) -> String {
    tokens(content).filter(|t| t.chars().count() <= MAX_TOKEN_CHARS).collect::<Vec<_>>().join(" ")
}

/// One query term: every term must equal one of a message's tokens (a prefix term: be a prefix
/// of one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    pub text: String,
    pub prefix: bool,
}

/// Why a query was refused (the messages are api.md's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("search query must not be empty")]
    Empty,
    #[error("search query is too long")]
    TooLong,
    #[error("too many search terms (max 16)")]
    TooManyTerms,
    #[error("search term too long (max 64 characters)")]
    TermTooLong,
}

/// Parses a query: tokens as for content; a token immediately followed by `*` is a prefix term.
/// Duplicate terms collapse.
pub fn parse_query(q: &str) -> Result<Vec<Term>, QueryError> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong);
    }
    let mut terms: Vec<Term> = Vec::new();
    let mut rest = q;
    while let Some(start) = rest.find(|c: char| c.is_alphanumeric()) {
        rest = &rest[start..];
        let end = rest.find(|c: char| !c.is_alphanumeric()).unwrap_or(rest.len());
        let text = rest[..end].to_lowercase();
        let prefix = rest[end..].starts_with('*');
        rest = &rest[end..];
        if text.chars().count() > MAX_TOKEN_CHARS {
            return Err(QueryError::TermTooLong);
        }
        let term = Term { text, prefix };
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    if terms.is_empty() {
        return Err(QueryError::Empty);
    }
    if terms.len() > MAX_TERMS {
        return Err(QueryError::TooManyTerms);
    }
    Ok(terms)
}

/// An FTS5 MATCH expression: each term double-quoted, prefix terms starred, space-separated (AND).
pub fn fts5_match(terms: &[Term]) -> String {
    terms
        .iter()
        .map(|t| {
            let quoted = format!("\"{}\"", t.text.replace('"', "\"\""));
            if t.prefix { quoted + "*" } else { quoted }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `tsquery` text: each term single-quoted, prefix terms `:*`, joined with `&`.
pub fn tsquery(terms: &[Term]) -> String {
    terms
        .iter()
        .map(|t| {
            let quoted = format!("'{}'", t.text.replace('\\', "\\\\").replace('\'', "''"));
            if t.prefix { quoted + ":*" } else { quoted }
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// Whether `token` is matched by `term`.
fn term_matches(term: &Term, token: &str) -> bool {
    if term.prefix { token.starts_with(&term.text) } else { token == term.text }
}

/// The search result's `highlight`: all of a content of at most 200 characters, otherwise a
/// 200-character window starting 60 characters before the first matching token (clamped to the
/// text) with `…` on each cut side; every whole matching token inside is wrapped in `**`.
pub fn highlight(content: &str, terms: &[Term]) -> String {
    const WINDOW: usize = 200;
    const LEAD: usize = 60;
    let chars: Vec<char> = content.chars().collect();

    // Token spans in character offsets.
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphanumeric() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if token.chars().count() <= MAX_TOKEN_CHARS && terms.iter().any(|t| term_matches(t, &token)) {
                spans.push((start, i));
            }
        } else {
            i += 1;
        }
    }

    let (from, to) = if chars.len() <= WINDOW {
        (0, chars.len())
    } else {
        let first = spans.first().map_or(0, |s| s.0);
        let from = first.saturating_sub(LEAD).min(chars.len() - WINDOW);
        (from, from + WINDOW)
    };

    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut pos = from;
    for &(start, end) in spans.iter().filter(|(s, e)| *s >= from && *e <= to) {
        out.extend(&chars[pos..start]);
        out.push_str("**");
        out.extend(&chars[start..end]);
        out.push_str("**");
        pos = end;
    }
    out.extend(&chars[pos..to]);
    if to < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn term(text: &str, prefix: bool) -> Term {
        Term { text: text.into(), prefix }
    }

    #[test]
    fn normalise_lowercases_and_splits_on_everything_but_alphanumerics() {
        assert_eq!(normalise("Hello, World! café_au-lait 42"), "hello world café au lait 42");
        assert_eq!(normalise("  "), "");
        assert_eq!(normalise(&format!("short {} end", "x".repeat(65))), "short end");
        assert_eq!(normalise("שלום עולם 🎉 ok"), "שלום עולם ok");
    }

    #[test]
    fn parse_query_finds_prefix_terms_and_rejects_bad_queries() {
        assert_eq!(
            parse_query("Rust* AND \"async\" rust*").unwrap(),
            vec![term("rust", true), term("and", false), term("async", false)]
        );
        assert_eq!(parse_query(" *** "), Err(QueryError::Empty));
        assert_eq!(parse_query(&"a".repeat(257)), Err(QueryError::TooLong));
        assert_eq!(parse_query(&"x".repeat(65)), Err(QueryError::TermTooLong));
        let seventeen: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
        assert_eq!(parse_query(&seventeen.join(" ")), Err(QueryError::TooManyTerms));
    }

    #[test]
    fn query_texts_for_both_dialects() {
        let terms = vec![term("rust", true), term("o'neil", false)];
        assert_eq!(fts5_match(&terms), "\"rust\"* \"o'neil\"");
        assert_eq!(tsquery(&terms), "'rust':* & 'o''neil'");
    }

    #[test]
    fn highlight_marks_whole_matching_tokens() {
        assert_eq!(highlight("Rust is great; rusty too", &[term("rust", true)]), "**Rust** is great; **rusty** too");
        let long = format!("{} needle {}", "a ".repeat(100), "b ".repeat(100));
        let h = highlight(&long, &[term("needle", false)]);
        assert!(h.starts_with('…') && h.ends_with('…'), "{h}");
        assert!(h.contains("**needle**"));
        assert_eq!(h.chars().count(), 200 + 2 + 4);
    }
}
