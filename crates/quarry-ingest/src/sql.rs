//! SQL dump files (SQLite and PostgreSQL dialects): every row of every `INSERT` (and PostgreSQL
//! `COPY … FROM stdin`) becomes a document, with the table and column names as metadata.
//!
//! Column names come from the `INSERT`'s column list or from the table's `CREATE TABLE`. Other
//! statements (DROP, CREATE INDEX, ALTER …) are read past. A syntax error fails the whole file with
//! its line: a half-read dump would index a partial database.

use std::collections::HashMap;
use std::path::Path;

use crate::error::Error;
use crate::loader::{utf8, Loaded, Loader};
use crate::record::{Field, Row, RowTemplate};

pub struct SqlDumpLoader {
    pub template: RowTemplate,
}

/// The rows of one table, in dump order.
#[derive(Debug, Default)]
pub struct Table {
    pub name: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// A quoted identifier: `[x]`, `"x"` or `` `x` ``.
    Quoted(String),
    Str(String),
    Num(String),
    Punct(char),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

type Fail = (usize, String);

impl<'a> Lexer<'a> {
    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Skips whitespace and comments; at the start of a statement also psql meta-commands (`\c db`).
    fn skip_trivia(&mut self, statement_start: bool) -> Result<(), Fail> {
        loop {
            let r = self.rest();
            if r.starts_with("--") {
                while self.peek_char().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if r.starts_with("/*") {
                let line = self.line;
                self.bump();
                self.bump();
                loop {
                    if self.rest().starts_with("*/") {
                        self.bump();
                        self.bump();
                        break;
                    }
                    if self.bump().is_none() {
                        return Err((line, "unterminated /* comment".into()));
                    }
                }
            } else if statement_start && r.starts_with('\\') {
                while self.peek_char().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if self.peek_char().is_some_and(char::is_whitespace) {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    fn quoted(&mut self, close: char, doubled: bool, backslash: bool) -> Result<String, Fail> {
        let line = self.line;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err((line, format!("unterminated quoted text (missing {close})"))),
                Some('\\') if backslash => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c) => out.push(c),
                    None => return Err((line, "unterminated escape".into())),
                },
                Some(c) if c == close => {
                    if doubled && self.peek_char() == Some(close) {
                        self.bump();
                        out.push(close);
                    } else {
                        return Ok(out);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The next token, or `None` at the end of the input.
    fn next(&mut self, statement_start: bool) -> Result<Option<Tok>, Fail> {
        self.skip_trivia(statement_start)?;
        let Some(c) = self.peek_char() else {
            return Ok(None);
        };
        let tok = match c {
            '\'' => {
                self.bump();
                Tok::Str(self.quoted('\'', true, false)?)
            }
            '"' => {
                self.bump();
                Tok::Quoted(self.quoted('"', true, false)?)
            }
            '`' => {
                self.bump();
                Tok::Quoted(self.quoted('`', true, false)?)
            }
            '[' => {
                self.bump();
                Tok::Quoted(self.quoted(']', false, false)?)
            }
            c if c.is_ascii_digit() || (c == '.' && self.rest()[1..].starts_with(|d: char| d.is_ascii_digit())) => {
                let start = self.pos;
                while self
                    .peek_char()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || d == '.' || d == '_')
                {
                    self.bump();
                }
                // Exponent sign: 1e-5.
                if self.src[start..self.pos].ends_with(['e', 'E']) && self.rest().starts_with(['+', '-']) {
                    self.bump();
                    while self.peek_char().is_some_and(|d| d.is_ascii_digit()) {
                        self.bump();
                    }
                }
                Tok::Num(self.src[start..self.pos].to_string())
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self
                    .peek_char()
                    .is_some_and(|d| d.is_alphanumeric() || d == '_' || d == '$')
                {
                    self.bump();
                }
                let word = &self.src[start..self.pos];
                // N'…' (national), E'…' (PostgreSQL escapes), X'…' (hex blob) string prefixes.
                if self.peek_char() == Some('\'') && word.len() == 1 {
                    self.bump();
                    let backslash = word.eq_ignore_ascii_case("e");
                    Tok::Str(self.quoted('\'', true, backslash)?)
                } else {
                    Tok::Word(word.to_string())
                }
            }
            c => {
                self.bump();
                Tok::Punct(c)
            }
        };
        Ok(Some(tok))
    }
}

/// Reads every table's rows out of a dump.
pub fn parse_dump(text: &str) -> Result<Vec<Table>, Fail> {
    let mut lx = Lexer {
        src: text,
        pos: 0,
        line: 1,
    };
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    let mut tables: Vec<Table> = Vec::new();
    let mut table_index: HashMap<String, usize> = HashMap::new();
    loop {
        let line = {
            lx.skip_trivia(true)?;
            lx.line
        };
        let mut stmt = Vec::new();
        while let Some(t) = lx.next(stmt.is_empty())? {
            if t == Tok::Punct(';') {
                break;
            }
            stmt.push(t);
        }
        if stmt.is_empty() {
            if lx.peek_char().is_none() {
                break;
            }
            continue;
        }
        let kw = |i: usize, w: &str| matches!(stmt.get(i), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
        if kw(0, "CREATE") && (kw(1, "TABLE") || kw(2, "TABLE")) {
            let (name, cols) = create_table(&stmt).map_err(|m| (line, m))?;
            columns.insert(name.to_ascii_lowercase(), cols);
        } else if kw(0, "INSERT") || kw(0, "REPLACE") {
            let (name, rows) = insert(&stmt, &columns).map_err(|m| (line, m))?;
            add_rows(&mut tables, &mut table_index, name, rows);
        } else if kw(0, "COPY")
            && stmt
                .iter()
                .any(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("stdin")))
        {
            let (name, cols) = copy_header(&stmt, &columns).map_err(|m| (line, m))?;
            let rows = copy_rows(&mut lx, &cols)?;
            add_rows(&mut tables, &mut table_index, name, rows);
        }
    }
    Ok(tables)
}

fn ident(t: Option<&Tok>) -> Option<String> {
    match t {
        Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Some(w.clone()),
        _ => None,
    }
}

/// `schema.table` → (`table`, index after the name).
fn qualified_name(stmt: &[Tok], mut i: usize) -> Result<(String, usize), String> {
    let mut name = ident(stmt.get(i)).ok_or("expected a table name")?;
    i += 1;
    while stmt.get(i) == Some(&Tok::Punct('.')) {
        name = ident(stmt.get(i + 1)).ok_or("expected a name after `.`")?;
        i += 2;
    }
    Ok((name, i))
}

/// Top-level comma-separated groups inside the parenthesis that opens at `open`; returns them and
/// the index after the closing parenthesis.
fn groups(stmt: &[Tok], open: usize) -> Result<(Vec<&[Tok]>, usize), String> {
    if stmt.get(open) != Some(&Tok::Punct('(')) {
        return Err("expected `(`".into());
    }
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut start = open + 1;
    for (i, t) in stmt.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    out.push(&stmt[start..i]);
                    return Ok((out, i + 1));
                }
            }
            Tok::Punct(',') if depth == 1 => {
                out.push(&stmt[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    Err("unbalanced parentheses".into())
}

fn create_table(stmt: &[Tok]) -> Result<(String, Vec<String>), String> {
    let mut i = stmt
        .iter()
        .position(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("TABLE")))
        .ok_or("expected TABLE")?
        + 1;
    while matches!(stmt.get(i), Some(Tok::Word(w)) if ["IF", "NOT", "EXISTS"].iter().any(|k| w.eq_ignore_ascii_case(k)))
    {
        i += 1;
    }
    let (name, i) = qualified_name(stmt, i)?;
    if stmt.get(i) != Some(&Tok::Punct('(')) {
        // CREATE TABLE … AS SELECT: no column list to learn.
        return Ok((name, vec![]));
    }
    let (defs, _) = groups(stmt, i)?;
    const NOT_COLUMNS: [&str; 7] = ["CONSTRAINT", "PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "KEY", "INDEX"];
    let cols = defs
        .iter()
        .filter_map(|d| match d.first() {
            Some(Tok::Word(w)) if NOT_COLUMNS.iter().any(|k| w.eq_ignore_ascii_case(k)) => None,
            first => ident(first),
        })
        .collect();
    Ok((name, cols))
}

fn value(tokens: &[Tok]) -> Result<Field, String> {
    match tokens {
        [Tok::Str(s)] => Ok(Field::Text(s.clone())),
        [Tok::Num(n)] => Ok(number(n, false)),
        [Tok::Punct('-'), Tok::Num(n)] => Ok(number(n, true)),
        [Tok::Punct('+'), Tok::Num(n)] => Ok(number(n, false)),
        [Tok::Word(w)] if w.eq_ignore_ascii_case("NULL") => Ok(Field::Null),
        [Tok::Word(w)] if w.eq_ignore_ascii_case("TRUE") => Ok(Field::Bool(true)),
        [Tok::Word(w)] if w.eq_ignore_ascii_case("FALSE") => Ok(Field::Bool(false)),
        // A cast or a function call (`'2021-01-01'::date`, `CAST(… AS …)`): keep its first literal.
        _ => tokens
            .iter()
            .find_map(|t| match t {
                Tok::Str(s) => Some(Field::Text(s.clone())),
                Tok::Num(n) => Some(number(n, false)),
                _ => None,
            })
            .ok_or_else(|| "expected a value (a literal, NULL, TRUE or FALSE)".to_string()),
    }
}

fn number(n: &str, negative: bool) -> Field {
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() => Field::Number(if negative { -v } else { v }),
        _ => Field::Text(if negative { format!("-{n}") } else { n.to_string() }),
    }
}

fn insert(stmt: &[Tok], known: &HashMap<String, Vec<String>>) -> Result<(String, Vec<Row>), String> {
    let into = stmt
        .iter()
        .position(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case("INTO")))
        .ok_or("expected INTO")?;
    let (name, mut i) = qualified_name(stmt, into + 1)?;
    let cols: Vec<String> = if stmt.get(i) == Some(&Tok::Punct('(')) {
        let (g, next) = groups(stmt, i)?;
        i = next;
        g.iter()
            .map(|c| match c {
                [t] => ident(Some(t)).ok_or_else(|| "expected a column name".to_string()),
                _ => Err("expected a column name".to_string()),
            })
            .collect::<Result<_, _>>()?
    } else {
        known
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| format!("INSERT into {name} has no column list and no CREATE TABLE precedes it"))?
    };
    match stmt.get(i) {
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("VALUES") => i += 1,
        _ => return Err(format!("INSERT into {name}: expected VALUES")),
    }
    let mut rows = Vec::new();
    loop {
        let (vals, next) = groups(stmt, i).map_err(|e| format!("INSERT into {name}, row {}: {e}", rows.len() + 1))?;
        if vals.len() != cols.len() {
            return Err(format!(
                "INSERT into {name}, row {}: {} values for {} columns",
                rows.len() + 1,
                vals.len(),
                cols.len()
            ));
        }
        let fields = cols
            .iter()
            .zip(vals)
            .map(|(c, v)| Ok((c.clone(), value(v)?)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| format!("INSERT into {name}, row {}: {e}", rows.len() + 1))?;
        rows.push(Row { fields });
        i = next;
        if stmt.get(i) == Some(&Tok::Punct(',')) {
            i += 1;
        } else {
            break;
        }
    }
    // Whatever follows (ON CONFLICT …, RETURNING …) does not add rows.
    Ok((name, rows))
}

fn copy_header(stmt: &[Tok], known: &HashMap<String, Vec<String>>) -> Result<(String, Vec<String>), String> {
    let (name, i) = qualified_name(stmt, 1)?;
    if stmt.get(i) == Some(&Tok::Punct('(')) {
        let (g, _) = groups(stmt, i)?;
        let cols = g
            .iter()
            .map(|c| c.first().and_then(|t| ident(Some(t))).unwrap_or_default())
            .collect();
        return Ok((name, cols));
    }
    let cols = known
        .get(&name.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| format!("COPY into {name} has no column list and no CREATE TABLE precedes it"))?;
    Ok((name, cols))
}

/// The tab-separated data lines after `COPY … FROM stdin;`, up to the `\.` line.
fn copy_rows(lx: &mut Lexer, cols: &[String]) -> Result<Vec<Row>, Fail> {
    // The data starts on the line after the statement.
    while lx.peek_char().is_some_and(|c| c != '\n') {
        lx.bump();
    }
    lx.bump();
    let mut rows = Vec::new();
    loop {
        let line_no = lx.line;
        let rest = lx.rest();
        if rest.is_empty() {
            return Err((line_no, "COPY data ends without a `\\.` line".into()));
        }
        let end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..end].trim_end_matches('\r');
        for _ in 0..rest[..end].chars().count() {
            lx.bump();
        }
        lx.bump();
        if line == "\\." {
            return Ok(rows);
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.len() != cols.len() {
            return Err((
                line_no,
                format!("COPY row has {} fields for {} columns", cells.len(), cols.len()),
            ));
        }
        let fields = cols
            .iter()
            .zip(cells)
            .map(|(c, v)| (c.clone(), copy_value(v)))
            .collect();
        rows.push(Row { fields });
    }
}

fn copy_value(cell: &str) -> Field {
    if cell == "\\N" {
        return Field::Null;
    }
    let mut out = String::with_capacity(cell.len());
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Field::Text(out)
}

impl Loader for SqlDumpLoader {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let text = utf8(path, bytes)?;
        let tables = parse_dump(text).map_err(|(line, message)| Error::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        if tables.iter().all(|t| t.rows.is_empty()) {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                reason: "no INSERT or COPY rows in the SQL file".into(),
            });
        }
        Ok(self.template.tables(source, &tables, "sql"))
    }
}

/// Appends rows to their table (matched case-insensitively), creating it at its first statement.
fn add_rows(tables: &mut Vec<Table>, index: &mut HashMap<String, usize>, name: String, rows: Vec<Row>) {
    let i = *index.entry(name.to_ascii_lowercase()).or_insert_with(|| {
        tables.push(Table { name, rows: vec![] });
        tables.len() - 1
    });
    tables[i].rows.extend(rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQLITE: &str = "/* header */\nCREATE TABLE [Artist] (\n  [ArtistId] INTEGER NOT NULL,\n  [Name] NVARCHAR(120),\n  CONSTRAINT [PK] PRIMARY KEY ([ArtistId])\n);\n-- rows\nINSERT INTO [Artist] ([ArtistId], [Name]) VALUES\n  (1, 'AC/DC'),\n  (2, 'Guns N'' Roses'),\n  (3, NULL);\nINSERT INTO Artist VALUES (4, N'Caf\u{e9}; Bar');\n";

    #[test]
    fn sqlite_dialect_inserts_with_and_without_column_lists() {
        let tables = parse_dump(SQLITE).unwrap();
        assert_eq!(tables.len(), 1);
        let t = &tables[0];
        assert_eq!(t.name, "Artist");
        assert_eq!(t.rows.len(), 4);
        assert_eq!(t.rows[1].get("Name"), Some(&Field::Text("Guns N' Roses".into())));
        assert_eq!(t.rows[2].get("Name"), Some(&Field::Null));
        assert_eq!(t.rows[3].get("Name"), Some(&Field::Text("Café; Bar".into())));
        assert_eq!(t.rows[3].get("ArtistId"), Some(&Field::Number(4.0)));
    }

    #[test]
    fn postgres_copy_blocks_and_meta_commands() {
        let dump = "\\c chinook;\nCREATE TABLE public.genre (genre_id int, name text);\nCOPY public.genre (genre_id, name) FROM stdin;\n1\tRock\n2\tJazz\\tFusion\n3\t\\N\n\\.\nINSERT INTO public.genre VALUES (-4, E'It''s\\nnew'), (5, 'x'::text);\n";
        let tables = parse_dump(dump).unwrap();
        assert_eq!(tables[0].name, "genre");
        assert_eq!(tables[0].rows.len(), 5);
        assert_eq!(tables[0].rows[1].get("name"), Some(&Field::Text("Jazz\tFusion".into())));
        assert_eq!(tables[0].rows[2].get("name"), Some(&Field::Null));
        assert_eq!(tables[0].rows[3].get("genre_id"), Some(&Field::Number(-4.0)));
        assert_eq!(tables[0].rows[3].get("name"), Some(&Field::Text("It's\nnew".into())));
        assert_eq!(tables[0].rows[4].get("name"), Some(&Field::Text("x".into())));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            (
                "INSERT INTO t (a, b) VALUES (1, 2), (3);\n",
                1,
                "INSERT into t, row 2: 1 values for 2 columns",
            ),
            (
                "\n\nINSERT INTO t (a) VALUES ('open;\n",
                3,
                "unterminated quoted text (missing ')",
            ),
            (
                "INSERT INTO u VALUES (1);",
                1,
                "INSERT into u has no column list and no CREATE TABLE precedes it",
            ),
            ("/* never closed", 1, "unterminated /* comment"),
            (
                "INSERT INTO t (a) VALUES (1, 2;",
                1,
                "INSERT into t, row 1: unbalanced parentheses",
            ),
        ];
        for (dump, line, message) in cases {
            assert_eq!(parse_dump(dump).unwrap_err(), (line, message.to_string()), "{dump:?}");
        }
        let e = SqlDumpLoader {
            template: RowTemplate::default(),
        }
        .load(
            Path::new("bad.sql"),
            "bad.sql",
            b"INSERT INTO t (a) VALUES (1), (2, 3);",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "bad.sql:1: INSERT into t, row 2: 2 values for 1 columns");
    }
}
