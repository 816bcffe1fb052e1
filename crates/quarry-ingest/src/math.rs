//! Formulas on web pages as readable text: what a reader sees, not the markup that draws it.
//!
//! Web pages carry a formula as TeX (the alt text of a rendered formula image, as on Wikipedia, or a MathML
//! `alttext`/`<annotation>`) or as presentation MathML. Both are turned into one line of Unicode text: `A Hermitian
//! ⟺ a_ij = a̅_ji` rather than `{\displaystyle A{\text{ Hermitian}}\quad \iff \quad a_{ij}={\overline {a_{ji}}}}`.
//! Layout and font commands (`\displaystyle`, `\quad`, `\left`, `\mathsf`, `\text`…) produce nothing, symbols become
//! their Unicode characters, function names (`\det`) their names, sub- and superscripts are written `_` and `^`,
//! fractions `a/b`. The aim is searchable, readable text, not a faithful typesetting: an unknown command keeps its
//! name, so nothing is silently lost.

use dom_query::NodeRef;

/// Nesting deeper than this (braces in TeX, elements in MathML) is read flat: no stack exhaustion on garbage.
const MAX_NESTING: usize = 64;

/// Whether an image's alt text is TeX source: it uses a backslash command (`\frac`, `\displaystyle`…).
pub(crate) fn looks_like_tex(alt: &str) -> bool {
    let b = alt.as_bytes();
    b.windows(2).any(|w| w[0] == b'\\' && w[1].is_ascii_alphabetic())
}

/// TeX with whitespace runs collapsed, to recognise the same formula given twice.
pub(crate) fn tex_key(tex: &str) -> String {
    tex.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Commands that only change layout, spacing or font: the command produces nothing, its argument (if any) is read
/// as ordinary content.
#[rustfmt::skip]
const SILENT: &[&str] = &[
    "displaystyle", "textstyle", "scriptstyle", "scriptscriptstyle", "left", "right", "middle", "big", "Big", "bigg",
    "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl", "Biggr", "limits", "nolimits", "mathsf",
    "mathrm", "mathbf", "mathit", "mathcal", "mathfrak", "mathscr", "mathtt", "mathnormal", "boldsymbol", "bm", "text",
    "textrm", "textit", "textbf", "textsf", "texttt", "textnormal", "mbox", "hbox", "rm", "bf", "it", "sf", "tt", "cal",
    "displaylimits", "underline", "underbrace", "overbrace", "strut", "nonumber", "notag",
];

/// Commands whose first argument is markup, not content (environment names, colours, labels, lengths).
const SKIP_ARG: &[&str] = &[
    "begin", "end", "color", "label", "hspace", "vspace", "hphantom", "vphantom", "phantom",
];

/// Spacing commands.
const SPACES: &[&str] = &[
    "quad",
    "qquad",
    "enspace",
    "thinspace",
    "medspace",
    "thickspace",
    "space",
];

/// Operator names typeset upright: they read as words.
#[rustfmt::skip]
const FUNCTIONS: &[&str] = &[
    "arccos", "arcsin", "arctan", "arg", "cos", "cosh", "cot", "coth", "csc", "deg", "det", "dim", "exp", "gcd", "hom",
    "inf", "ker", "lg", "lim", "liminf", "limsup", "ln", "log", "max", "min", "Pr", "sec", "sin", "sinh", "sup", "tan",
    "tanh", "tr", "rank", "sgn",
];

/// Accents over their argument, as combining characters.
const ACCENTS: &[(&str, char)] = &[
    ("overline", '\u{305}'),
    ("bar", '\u{304}'),
    ("hat", '\u{302}'),
    ("widehat", '\u{302}'),
    ("tilde", '\u{303}'),
    ("widetilde", '\u{303}'),
    ("vec", '\u{20d7}'),
    ("dot", '\u{307}'),
    ("ddot", '\u{308}'),
];

/// Symbols by command name. Relations and arrows carry spaces around them (collapsed later).
#[rustfmt::skip]
const SYMBOLS: &[(&str, &str)] = &[
    ("alpha", "α"), ("beta", "β"), ("gamma", "γ"), ("delta", "δ"), ("epsilon", "ϵ"), ("varepsilon", "ε"),
    ("zeta", "ζ"), ("eta", "η"), ("theta", "θ"), ("vartheta", "ϑ"), ("iota", "ι"), ("kappa", "κ"), ("lambda", "λ"),
    ("mu", "μ"), ("nu", "ν"), ("xi", "ξ"), ("pi", "π"), ("varpi", "ϖ"), ("rho", "ρ"), ("varrho", "ϱ"),
    ("sigma", "σ"), ("varsigma", "ς"), ("tau", "τ"), ("upsilon", "υ"), ("phi", "ϕ"), ("varphi", "φ"), ("chi", "χ"),
    ("psi", "ψ"), ("omega", "ω"), ("Gamma", "Γ"), ("Delta", "Δ"), ("Theta", "Θ"), ("Lambda", "Λ"), ("Xi", "Ξ"),
    ("Pi", "Π"), ("Sigma", "Σ"), ("Upsilon", "Υ"), ("Phi", "Φ"), ("Psi", "Ψ"), ("Omega", "Ω"),
    ("leq", " ≤ "), ("le", " ≤ "), ("geq", " ≥ "), ("ge", " ≥ "), ("neq", " ≠ "), ("ne", " ≠ "), ("approx", " ≈ "),
    ("equiv", " ≡ "), ("sim", " ∼ "), ("simeq", " ≃ "), ("cong", " ≅ "), ("propto", " ∝ "), ("ll", " ≪ "),
    ("gg", " ≫ "), ("subset", " ⊂ "), ("subseteq", " ⊆ "), ("supset", " ⊃ "), ("supseteq", " ⊇ "), ("in", " ∈ "),
    ("notin", " ∉ "), ("ni", " ∋ "), ("mid", " ∣ "), ("perp", " ⊥ "), ("parallel", " ∥ "), ("vdash", " ⊢ "),
    ("models", " ⊨ "), ("coloneqq", " ≔ "),
    ("to", " → "), ("rightarrow", " → "), ("leftarrow", " ← "), ("gets", " ← "), ("Rightarrow", " ⇒ "),
    ("Leftarrow", " ⇐ "), ("leftrightarrow", " ↔ "), ("Leftrightarrow", " ⇔ "), ("iff", " ⟺ "), ("implies", " ⟹ "),
    ("impliedby", " ⟸ "), ("mapsto", " ↦ "), ("longrightarrow", " ⟶ "), ("Longrightarrow", " ⟹ "),
    ("longleftrightarrow", " ⟷ "), ("Longleftrightarrow", " ⟺ "), ("uparrow", "↑"), ("downarrow", "↓"),
    ("cdot", "·"), ("times", "×"), ("div", "÷"), ("pm", "±"), ("mp", "∓"), ("ast", "∗"), ("star", "⋆"),
    ("circ", "∘"), ("bullet", "•"), ("oplus", "⊕"), ("otimes", "⊗"), ("cup", "∪"), ("cap", "∩"), ("wedge", "∧"),
    ("land", "∧"), ("vee", "∨"), ("lor", "∨"), ("setminus", "∖"), ("dagger", "†"), ("ddagger", "‡"), ("prime", "′"),
    ("sum", "∑"), ("prod", "∏"), ("coprod", "∐"), ("int", "∫"), ("iint", "∬"), ("oint", "∮"), ("bigcup", "⋃"),
    ("bigcap", "⋂"), ("bigoplus", "⨁"), ("bigotimes", "⨂"),
    ("infty", "∞"), ("partial", "∂"), ("nabla", "∇"), ("forall", "∀"), ("exists", "∃"), ("nexists", "∄"),
    ("emptyset", "∅"), ("varnothing", "∅"), ("neg", "¬"), ("lnot", "¬"), ("ldots", "…"), ("dots", "…"),
    ("cdots", "⋯"), ("vdots", "⋮"), ("ddots", "⋱"), ("langle", "⟨"), ("rangle", "⟩"), ("lfloor", "⌊"),
    ("rfloor", "⌋"), ("lceil", "⌈"), ("rceil", "⌉"), ("lvert", "|"), ("rvert", "|"), ("vert", "|"), ("Vert", "‖"),
    ("lVert", "‖"), ("rVert", "‖"), ("lbrace", "{"), ("rbrace", "}"), ("backslash", "\\"), ("hbar", "ℏ"),
    ("ell", "ℓ"), ("Re", "ℜ"), ("Im", "ℑ"), ("aleph", "ℵ"), ("angle", "∠"), ("triangle", "△"), ("top", "⊤"),
    ("bot", "⊥"), ("colon", ":"), ("degree", "°"), ("checkmark", "✓"),
];

/// Double-struck letters (`\mathbb{R}`) that Unicode has as letterlike symbols.
const DOUBLE_STRUCK: &[(char, char)] = &[
    ('C', 'ℂ'),
    ('H', 'ℍ'),
    ('N', 'ℕ'),
    ('P', 'ℙ'),
    ('Q', 'ℚ'),
    ('R', 'ℝ'),
    ('Z', 'ℤ'),
];

/// A TeX formula (as found in alt text) as readable Unicode text on one line.
pub(crate) fn latex_to_text(tex: &str) -> String {
    let mut p = Tex {
        chars: tex.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let out = p.sequence(false);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A piece of output and whether it must stand apart from letters and digits next to it (a function name after a
/// variable, a variable after a subscript).
struct Piece {
    text: String,
    word: bool,
}

impl Piece {
    fn plain(text: impl Into<String>) -> Piece {
        Piece {
            text: text.into(),
            word: false,
        }
    }
}

struct Tex {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Tex {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Pieces up to the end, or (in a group) up to its closing brace, joined.
    fn sequence(&mut self, in_group: bool) -> String {
        let mut out = String::new();
        let mut last_word = false;
        while let Some(c) = self.peek() {
            if c == '}' {
                self.pos += 1;
                if in_group {
                    break;
                }
                continue;
            }
            let piece = self.atom();
            if piece.text.is_empty() {
                continue;
            }
            let starts = piece.text.chars().next().is_some_and(char::is_alphanumeric);
            let ends = out
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || is_mark(c));
            if starts && ends && (piece.word || last_word) {
                out.push(' ');
            }
            out.push_str(&piece.text);
            last_word = piece.word;
        }
        out
    }

    /// One group, command (with its arguments), script or character.
    fn atom(&mut self) -> Piece {
        let Some(c) = self.peek() else {
            return Piece::plain("");
        };
        self.pos += 1;
        match c {
            '{' => Piece::plain(self.group()),
            '\\' => self.command(),
            '_' | '^' => {
                let arg = self.argument();
                Piece {
                    text: if arg.is_empty() {
                        String::new()
                    } else {
                        format!("{c}{arg}")
                    },
                    word: true,
                }
            }
            '&' | '~' => Piece::plain(" "),
            c if c.is_whitespace() => {
                // Spaces are kept (alt text may be prose around a formula), but not before a script: `x ^{n}`.
                self.skip_spaces();
                Piece::plain(if matches!(self.peek(), Some('_' | '^')) {
                    ""
                } else {
                    " "
                })
            }
            c => Piece::plain(c.to_string()),
        }
    }

    /// The rest of a group whose `{` was read.
    fn group(&mut self) -> String {
        if self.depth >= MAX_NESTING {
            return String::new(); // read flat: the braces are dropped, their content follows as usual
        }
        self.depth += 1;
        let s = self.sequence(true);
        self.depth -= 1;
        s
    }

    /// A command's or script's argument: a group, or else the next single atom. Too deep, it is empty (what
    /// follows is read flat).
    fn argument(&mut self) -> String {
        self.skip_spaces();
        if self.depth >= MAX_NESTING {
            return String::new();
        }
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.group()
            }
            Some(_) => {
                self.depth += 1;
                let s = self.atom().text;
                self.depth -= 1;
                s
            }
            None => String::new(),
        }
    }

    fn command(&mut self) -> Piece {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        if self.pos == start {
            // A control symbol: `\,` `\;` `\!` `\ ` `\{` `\\`…
            let Some(c) = self.peek() else {
                return Piece::plain("");
            };
            self.pos += 1;
            return Piece::plain(match c {
                ',' | ';' | ':' | ' ' | '>' => " ".to_string(),
                '!' => String::new(),
                '\\' => "; ".to_string(),
                '|' => "‖".to_string(),
                c => c.to_string(),
            });
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        self.skip_spaces();
        let name = name.as_str();
        if SILENT.contains(&name) {
            if matches!(name, "left" | "right" | "middle") && self.peek() == Some('.') {
                self.pos += 1; // `\left.`: no delimiter
            }
            return Piece::plain("");
        }
        if SPACES.contains(&name) {
            return Piece::plain(" ");
        }
        if SKIP_ARG.contains(&name) {
            self.argument();
            return Piece::plain(" ");
        }
        if FUNCTIONS.contains(&name) {
            return Piece {
                text: name.to_string(),
                word: true,
            };
        }
        if let Some((_, s)) = SYMBOLS.iter().find(|(n, _)| *n == name) {
            return Piece::plain(*s);
        }
        if let Some((_, mark)) = ACCENTS.iter().find(|(n, _)| *n == name) {
            return Piece::plain(accented(&self.argument(), *mark));
        }
        match name {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let (num, den) = (self.argument(), self.argument());
                Piece::plain(format!("{}/{}", parenthesize(&num), parenthesize(&den)))
            }
            "sqrt" => {
                let mut index = String::new();
                if self.peek() == Some('[') {
                    self.pos += 1;
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        if c == ']' {
                            break;
                        }
                        index.push(c);
                    }
                }
                let arg = self.argument();
                Piece::plain(format!("{}√{}", index.trim(), parenthesize(&arg)))
            }
            "mathbb" => {
                let arg = self.argument();
                let s = arg
                    .chars()
                    .map(|c| DOUBLE_STRUCK.iter().find(|(l, _)| *l == c).map_or(c, |(_, d)| *d))
                    .collect::<String>();
                Piece::plain(s)
            }
            "operatorname" | "mathop" => Piece {
                text: self.argument().trim().to_string(),
                word: true,
            },
            // Unknown: the name stays, so the formula loses nothing a reader could search for.
            _ => Piece {
                text: name.to_string(),
                word: true,
            },
        }
    }
}

/// An accent over `base`: on its first letter when subscripts follow (`a̅_ji`), else after it.
fn accented(base: &str, mark: char) -> String {
    match base.find(['_', '^']).filter(|&i| i > 0) {
        Some(i) => format!("{}{mark}{}", &base[..i], &base[i..]),
        None => format!("{base}{mark}"),
    }
}

fn is_mark(c: char) -> bool {
    ACCENTS.iter().any(|(_, m)| *m == c)
}

/// `x` stays `x`; `n^2-n` becomes `(n^2-n)`: whatever is more than one name or number gets parentheses.
fn parenthesize(s: &str) -> String {
    let s = s.trim();
    let simple = s.chars().all(|c| c.is_alphanumeric() || is_mark(c) || c == '√')
        || (s.starts_with('(') && s.ends_with(')') && s.matches('(').count() == 1);
    if simple {
        s.to_string()
    } else {
        format!("({s})")
    }
}

/// Presentation MathML as readable text (see the module doc); `None` when it has none (only annotations, say).
pub(crate) fn mathml_text(math: &NodeRef<'_>) -> Option<String> {
    let mut out = String::new();
    mathml(math, 0, &mut out);
    let s = out.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

/// The TeX a `<math>` element carries: its `alttext`, else a TeX `<annotation>`.
pub(crate) fn mathml_tex(math: &NodeRef<'_>) -> Option<String> {
    if let Some(a) = math.attr("alttext").filter(|a| !a.trim().is_empty()) {
        return Some(a.to_string());
    }
    math.descendants_it()
        .find(|n| {
            n.node_name().as_deref() == Some("annotation") && n.attr("encoding").is_some_and(|e| e.contains("tex"))
        })
        .map(|n| n.text().to_string())
        .filter(|t| !t.trim().is_empty())
}

fn element_children<'a>(node: &NodeRef<'a>) -> Vec<NodeRef<'a>> {
    node.children_it(false).filter(|c| c.is_element()).collect()
}

fn mathml_string(node: &NodeRef<'_>, depth: usize) -> String {
    let mut s = String::new();
    mathml(node, depth, &mut s);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn mathml(node: &NodeRef<'_>, depth: usize, out: &mut String) {
    if node.is_text() {
        out.push_str(&node.text());
        return;
    }
    let Some(name) = node.node_name() else { return };
    if depth > MAX_NESTING {
        out.push_str(&node.text());
        return;
    }
    let parts = || element_children(node);
    let sub = |n: &NodeRef<'_>| mathml_string(n, depth + 1);
    match name.as_ref() {
        "annotation" | "annotation-xml" | "mphantom" | "none" | "mprescripts" => {}
        "mo" => {
            let t = node.text();
            if t.trim() == "\u{2061}" {
                out.push(' '); // function application: `det A`
                return;
            }
            let t = t.trim().trim_matches(|c: char| matches!(c, '\u{2061}'..='\u{2064}'));
            if t.chars().count() == 1 && "()[]{}|,.;:!'′⟨⟩‖".contains(t) {
                out.push_str(t);
            } else if !t.is_empty() {
                out.push(' ');
                out.push_str(t);
                out.push(' ');
            }
        }
        "mi" | "mn" | "mtext" | "ms" => {
            // Words (text, operator names such as `det`) stand apart from the letters around them.
            let t = node.text();
            let word = name.as_ref() != "mn" && t.trim().chars().count() > 1;
            if word && out.chars().next_back().is_some_and(char::is_alphanumeric) {
                out.push(' ');
            }
            out.push_str(&t);
            if word {
                out.push(' ');
            }
        }
        "mspace" => out.push(' '),
        "msub" | "munder" | "msup" | "mover" | "msubsup" | "munderover" => {
            let p = parts();
            let Some(base) = p.first() else { return };
            out.push_str(&sub(base));
            let accent = |n: &NodeRef<'_>| {
                let t = n.text();
                let t = t.trim();
                match t {
                    "¯" | "‾" | "_" => Some('\u{305}'),
                    "^" | "ˆ" => Some('\u{302}'),
                    "~" | "˜" => Some('\u{303}'),
                    "→" | "⃗" => Some('\u{20d7}'),
                    "˙" | "." => Some('\u{307}'),
                    _ => None,
                }
            };
            let (low, high) = match name.as_ref() {
                "msub" | "munder" => (p.get(1), None),
                "msup" | "mover" => (None, p.get(1)),
                _ => (p.get(1), p.get(2)),
            };
            if let Some(l) = low {
                let s = sub(l);
                if !s.is_empty() {
                    out.push('_');
                    out.push_str(&s);
                }
            }
            if let Some(h) = high {
                match accent(h).filter(|_| name.as_ref() == "mover") {
                    Some(mark) => out.push(mark),
                    None => {
                        let s = sub(h);
                        if !s.is_empty() {
                            out.push('^');
                            out.push_str(&s);
                        }
                    }
                }
            }
            out.push(' ');
        }
        "mfrac" => {
            let p = parts();
            if let (Some(n), Some(d)) = (p.first(), p.get(1)) {
                out.push_str(&format!("{}/{} ", parenthesize(&sub(n)), parenthesize(&sub(d))));
            }
        }
        "msqrt" => out.push_str(&format!("√{} ", parenthesize(&p_join(&parts(), depth, "")))),
        "mroot" => {
            let p = parts();
            if let (Some(b), Some(i)) = (p.first(), p.get(1)) {
                out.push_str(&format!("{}√{} ", sub(i), parenthesize(&sub(b))));
            }
        }
        "mtr" | "mlabeledtr" => {
            out.push_str(&p_join(&parts(), depth, " "));
            out.push_str("; ");
        }
        _ => {
            for child in node.children_it(false) {
                mathml(&child, depth + 1, out);
            }
        }
    }
}

fn p_join(nodes: &[NodeRef<'_>], depth: usize, sep: &str) -> String {
    nodes
        .iter()
        .map(|n| mathml_string(n, depth + 1))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tex_reads_as_text() {
        let cases = [
            (
                r"{\displaystyle A{\text{ Hermitian}}\quad \iff \quad a_{ij}={\overline {a_{ji}}}}",
                "A Hermitian ⟺ a_ij=a\u{305}_ji",
            ),
            (r"{\displaystyle A^{\mathsf {H}}=A^{\dagger }=A^{\ast }}", "A^H=A^†=A^∗"),
            (
                r"{\displaystyle \langle w,Av\rangle =\langle Aw,v\rangle ,}",
                "⟨w,Av⟩=⟨Aw,v⟩,",
            ),
            (
                r"{\displaystyle {\frac {1}{\sqrt {2}}}\left(E_{jk}+E_{kj}\right){\text{ for }}1\leq j<k\leq n}",
                "1/√2(E_jk+E_kj) for 1 ≤ j<k ≤ n",
            ),
            (
                r"{\displaystyle A=\sum _{j}\lambda _{j}u_{j}u_{j}^{\mathsf {H}},}",
                "A=∑_j λ_j u_j u_j^H,",
            ),
            (
                r"{\displaystyle \det(A)=\det \left(A^{\mathsf {T}}\right)\quad \Rightarrow \quad x}",
                "det(A)=det(A^T) ⇒ x",
            ),
            (r"\lambda_\min", "λ_min"),
            (r"{\frac {n^{2}-n}{2}}", "(n^2-n)/2"),
            (r"x\in \mathbb {C} ^{n}", "x ∈ ℂ^n"),
            (r"\begin{bmatrix}a&b\\c&d\end{bmatrix}", "a b; c d"),
            (r"\sqrt[3]{x+1}", "3√(x+1)"),
            (r"\unknowncmd{x}", "unknowncmd x"),
            // Garbage does not panic and keeps its text.
            ("{{{{a", "a"),
            ("}}a\\", "a"),
        ];
        for (tex, want) in cases {
            assert_eq!(latex_to_text(tex), want, "{tex}");
        }
        assert!(looks_like_tex(cases[0].0) && looks_like_tex(r"v_\min"));
        assert!(!looks_like_tex("AB=BA") && !looks_like_tex("C:\\") && !looks_like_tex("R(M, x)"));
        let chain = format!("{}x", r"\sqrt".repeat(100_000));
        assert!(latex_to_text(&chain).ends_with('x'));
        let deep = format!("{}x{}", "{".repeat(5000), "}".repeat(5000));
        assert_eq!(latex_to_text(&deep), "x");
    }

    #[test]
    fn mathml_reads_as_text() {
        let html = r#"<math alttext="{\displaystyle a_{ij}={\overline {a_{ji}}}}"><semantics><mrow>
            <msub><mi>a</mi><mrow><mi>i</mi><mi>j</mi></mrow></msub><mo>=</mo>
            <msub><mover><mi>a</mi><mo>¯</mo></mover><mrow><mi>j</mi><mi>i</mi></mrow></msub></mrow>
            <annotation encoding="application/x-tex">{\displaystyle a_{ij}={\overline {a_{ji}}}}</annotation>
            </semantics></math>"#;
        let doc = dom_query::Document::from(html);
        let math = doc.select_single("math");
        let math = math.nodes().first().unwrap();
        assert_eq!(mathml_text(math).as_deref(), Some("a_ij = a\u{305}_ji"));
        assert_eq!(
            mathml_tex(math).as_deref(),
            Some(r"{\displaystyle a_{ij}={\overline {a_{ji}}}}")
        );
        let doc = dom_query::Document::from(
            "<math><mfrac><mn>1</mn><msqrt><mn>2</mn></msqrt></mfrac><mi>det</mi><mo>\u{2061}</mo><mi>A</mi>\
             <mo>≤</mo><mi>x</mi></math>",
        );
        let n = doc.select_single("math").nodes().first().and_then(mathml_text);
        assert_eq!(n.as_deref(), Some("1/√2 det A ≤ x"));
        let only_tex = dom_query::Document::from(
            "<math><semantics><annotation encoding=\"application/x-tex\">x^2</annotation></semantics></math>",
        );
        let math = only_tex.select_single("math");
        let math = math.nodes().first().unwrap();
        assert_eq!(mathml_text(math), None);
        assert_eq!(mathml_tex(math).as_deref(), Some("x^2"));
    }
}
