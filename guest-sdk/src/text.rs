//! Text normalisation and phrase matching that tolerate case, spacing,
//! punctuation and light paraphrase, without allocating per request.

use crate::hash::{self, U64Map};

/// Words of a text, lowercased, split on anything that is not a letter or a
/// digit; apostrophes are dropped inside words ("don't" -> "dont"). Reuse one
/// `Words` across requests: its buffers are kept.
#[derive(Default, Debug)]
pub struct Words {
    buf: String,
    spans: Vec<(u32, u32)>,
    hashes: Vec<u64>,
    /// Per word: whether it has an ASCII digit.
    digits: Vec<bool>,
}

impl Words {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the content with the words of `text`.
    pub fn parse(&mut self, text: &str) {
        self.buf.clear();
        self.spans.clear();
        self.hashes.clear();
        self.digits.clear();
        self.push(text);
    }

    /// Appends the words of `text` (for example a system prompt after the
    /// prompt); a phrase never spans the join.
    pub fn push(&mut self, text: &str) {
        // The word's hash (FNV-1a, as `hash::tag`) is built while its bytes
        // are copied. ASCII runs (nearly all of a prompt) are copied and
        // lowercased in bulk; only other chars are decoded one by one.
        let mut start: Option<usize> = None;
        let mut h = FNV;
        let mut digit = false;
        let bytes = text.as_bytes();
        self.buf.reserve(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_alphanumeric() {
                let run = i;
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                if start.is_none() {
                    start = Some(self.buf.len());
                    h = FNV;
                    digit = false;
                }
                for &c in &bytes[run..i] {
                    h = (h ^ c.to_ascii_lowercase() as u64).wrapping_mul(PRIME);
                    digit |= c.is_ascii_digit();
                }
                let from = self.buf.len();
                self.buf.push_str(&text[run..i]);
                self.buf[from..].make_ascii_lowercase();
                continue;
            }
            if b < 0x80 {
                i += 1;
                if b == b'\'' && start.is_some() {
                    // inside a word: drop it
                } else if let Some(s) = start.take() {
                    self.end_word(s, h, digit);
                }
                continue;
            }
            let ch = text[i..].chars().next().expect("a char starts here");
            i += ch.len_utf8();
            if ch.is_alphanumeric() {
                if start.is_none() {
                    start = Some(self.buf.len());
                    h = FNV;
                    digit = false;
                }
                let from = self.buf.len();
                self.buf.extend(ch.to_lowercase());
                for &c in &self.buf.as_bytes()[from..] {
                    h = (h ^ c as u64).wrapping_mul(PRIME);
                }
            } else if ch == '\u{2019}' && start.is_some() {
                // a typographic apostrophe inside a word: dropped too
            } else if let Some(s) = start.take() {
                self.end_word(s, h, digit);
            }
        }
        if let Some(s) = start {
            self.end_word(s, h, digit);
        }
        // A separator word that matches nothing keeps phrases from joining.
        self.spans.push((self.buf.len() as u32, self.buf.len() as u32));
        self.hashes.push(0);
        self.digits.push(false);
    }

    fn end_word(&mut self, start: usize, fnv: u64, digit: bool) {
        let end = self.buf.len();
        self.spans.push((start as u32, end as u32));
        // Equal to `word_hash` of the word (a test checks).
        self.hashes.push(hash::mix(fnv) | 1);
        self.digits.push(digit);
    }

    /// Whether word `i` has an ASCII digit (a number, an id, a version).
    pub fn has_digit(&self, i: usize) -> bool {
        self.digits[i]
    }

    /// Number of words (including one empty separator per `push`).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn word(&self, i: usize) -> &str {
        let (s, e) = self.spans[i];
        &self.buf[s as usize..e as usize]
    }

    /// Stable 64-bit hash of each word, in order (0 for separators).
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }
}

const FNV: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Each word's FNV-1a over its lowercased bytes (`Words::hashes` is
/// `mix(fnv) | 1`) and whether it has an ASCII digit, in order, without
/// copying the text: `Words::push`'s rules, for the host's text features
/// (a test keeps the two equal).
fn word_hashes(text: &str, mut on_word: impl FnMut(u64, bool)) {
    let (mut h, mut digit, mut in_word) = (FNV, false, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            if !in_word {
                (h, digit, in_word) = (FNV, false, true);
            }
            h = (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(PRIME);
            digit |= b.is_ascii_digit();
            i += 1;
            continue;
        }
        if b < 0x80 {
            i += 1;
            if in_word && b != b'\'' {
                on_word(h, digit);
                in_word = false;
            }
            continue;
        }
        let ch = text[i..].chars().next().expect("a char starts here");
        i += ch.len_utf8();
        if ch.is_alphanumeric() {
            if !in_word {
                (h, digit, in_word) = (FNV, false, true);
            }
            for lc in ch.to_lowercase() {
                let mut buf = [0u8; 4];
                for &c in lc.encode_utf8(&mut buf).as_bytes() {
                    h = (h ^ c as u64).wrapping_mul(PRIME);
                }
            }
        } else if in_word && ch != '\u{2019}' {
            on_word(h, digit);
            in_word = false;
        }
    }
    if in_word {
        on_word(h, digit);
    }
}

/// A fingerprint of a text and its number of words: the same for texts
/// that differ only in case, spacing or punctuation (numbers count). One
/// pass over the bytes, nothing allocated: cheap enough for every prompt.
pub fn fingerprint(text: &str) -> (u64, usize) {
    let (mut fp, mut words) = (FNV, 0usize);
    let (mut h, mut in_word) = (FNV, false);
    for &b in text.as_bytes() {
        // Letters, digits and non-ASCII bytes (other scripts) make words.
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            if !in_word {
                (h, in_word) = (FNV, true);
            }
            h = (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(PRIME);
        } else if in_word && b != b'\'' {
            fp = hash::mix(fp ^ h);
            words += 1;
            in_word = false;
        }
    }
    if in_word {
        fp = hash::mix(fp ^ h);
        words += 1;
    }
    (fp | 1, words)
}

/// The hash `Words` gives a word; never 0 for a non-empty word.
pub fn word_hash(word: &str) -> u64 {
    hash::tag(word) | 1
}

/// A set of phrase patterns matched over `Words`, tolerant of a few extra
/// words between the words of a phrase.
///
/// A pattern is words separated by spaces; a word may list alternatives with
/// `|`: `"show|explain|walk your|the reasoning|thinking|thought"` matches
/// "Please SHOW me all of your reasoning" with up to `max_gap` words between
/// consecutive pattern words.
#[derive(Debug)]
pub struct PhraseSet<T> {
    patterns: Vec<Pattern<T>>,
    /// word hash -> (pattern index, slot index) for every slot it can fill.
    index: U64Map<Vec<(u32, u16)>>,
    max_gap: usize,
    progress: Vec<(u16, usize, usize)>,
}

#[derive(Debug)]
struct Pattern<T> {
    text: String,
    slots: usize,
    value: T,
}

/// One match: which pattern, and where it starts and ends in the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub pattern: usize,
    pub first_word: usize,
    pub last_word: usize,
}

impl<T> PhraseSet<T> {
    pub fn new(max_gap: usize) -> Self {
        Self { patterns: Vec::new(), index: U64Map::default(), max_gap, progress: Vec::new() }
    }

    /// Adds a pattern; `value` comes back with each match (a category, a
    /// weight). Returns an error for an empty pattern.
    pub fn add(&mut self, pattern: &str, value: T) -> Result<(), String> {
        let p = self.patterns.len() as u32;
        let mut slots = 0u16;
        for slot in pattern.split_whitespace() {
            for alt in slot.split('|').filter(|a| !a.is_empty()) {
                let mut w = Words::new();
                w.parse(alt);
                if w.len() != 2 {
                    return Err(format!("pattern {pattern:?}: {alt:?} is not a single word"));
                }
                self.index.entry(w.hashes()[0]).or_default().push((p, slots));
            }
            slots += 1;
        }
        if slots == 0 {
            return Err("empty pattern".to_string());
        }
        self.patterns.push(Pattern { text: pattern.to_string(), slots: slots as usize, value });
        self.progress.push((0, 0, 0));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn pattern(&self, i: usize) -> &str {
        &self.patterns[i].text
    }

    pub fn value(&self, i: usize) -> &T {
        &self.patterns[i].value
    }

    /// Calls `on_match` for each pattern at most once per text (its first
    /// match), scanning the words once.
    pub fn find(&mut self, words: &Words, on_match: impl FnMut(Match)) {
        self.find_hashes(words.hashes(), on_match)
    }

    /// `find` over word hashes (`Words::hashes`, or the host's
    /// [`TextFeatures`]); a 0 is a boundary no phrase crosses.
    pub fn find_hashes(&mut self, hashes: &[u64], mut on_match: impl FnMut(Match)) {
        // Per pattern: (next slot wanted, position of the last matched word,
        // position of the first). Greedy: one partial match per pattern.
        for p in self.progress.iter_mut() {
            *p = (0, 0, 0);
        }
        for (pos, h) in hashes.iter().enumerate() {
            if *h == 0 {
                // A boundary between pushed texts: no phrase crosses it.
                for (p, pat) in self.progress.iter_mut().zip(&self.patterns) {
                    if (p.0 as usize) < pat.slots {
                        p.0 = 0;
                    }
                }
                continue;
            }
            let Some(hits) = self.index.get(h) else {
                continue;
            };
            for &(p, slot) in hits {
                let p = p as usize;
                let slots = self.patterns[p].slots;
                let (next, last, first) = self.progress[p];
                if next as usize == slots {
                    continue; // already reported
                }
                let in_reach = next > 0 && pos > last && pos - last <= self.max_gap + 1;
                if slot == next && in_reach {
                    self.progress[p] = (next + 1, pos, first);
                } else if slot == 0 && (next <= 1 || !in_reach) {
                    // (Re)start at the latest first word: a later start is
                    // never worse for the gap limit.
                    self.progress[p] = (1, pos, pos);
                } else {
                    continue;
                }
                let (next, _, first) = self.progress[p];
                if next as usize == slots {
                    on_match(Match { pattern: p, first_word: first, last_word: pos });
                }
            }
        }
    }
}

/// Word features of one text field over a batch, what contract 0.2's
/// `text` carries: the host computes them once per batch for every plugin
/// granted the text; natively ([`TextFeatures::compute`]) they come from the
/// same code, so a detector scores the same either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextFeatures {
    /// Every text's word hashes (as `Words::hashes`, without the
    /// separator), back to back.
    pub words: Vec<u64>,
    /// Request i's words are `words[word_ends[i-1]..word_ends[i]]`.
    pub word_ends: Vec<u32>,
    /// Bit `j % 64` of `word_digits[j / 64]`: word j has an ASCII digit.
    pub word_digits: Vec<u64>,
    /// Per request: [`fingerprint`] of the text (0 when absent) ...
    pub fingerprints: Vec<u64>,
    /// ... and its word count.
    pub fingerprint_words: Vec<u32>,
}

impl TextFeatures {
    /// The features of each text in turn (`None`: the request has none).
    pub fn compute<'a>(texts: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut f = TextFeatures::default();
        for t in texts {
            f.push(t);
        }
        f
    }

    /// Appends one request's text.
    pub fn push(&mut self, text: Option<&str>) {
        let Some(text) = text else {
            self.word_ends.push(self.words.len() as u32);
            self.fingerprints.push(0);
            self.fingerprint_words.push(0);
            return;
        };
        // For ASCII text `fingerprint`'s words are these words and its
        // per-word hash their FNV: one pass gives both.
        let ascii = text.is_ascii();
        let (mut fp, mut count) = (FNV, 0usize);
        word_hashes(text, |raw, digit| {
            if ascii {
                fp = hash::mix(fp ^ raw);
                count += 1;
            }
            let h = hash::mix(raw) | 1;
            let j = self.words.len();
            if j.is_multiple_of(64) {
                self.word_digits.push(0);
            }
            if digit {
                self.word_digits[j / 64] |= 1 << (j % 64);
            }
            self.words.push(h);
        });
        self.word_ends.push(self.words.len() as u32);
        let (fp, words) = if ascii { (fp | 1, count) } else { fingerprint(text) };
        self.fingerprints.push(fp);
        self.fingerprint_words.push(words as u32);
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.word_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.word_ends.is_empty()
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.word_ends[i - 1] as usize };
        start..self.word_ends[i] as usize
    }

    /// Request i's word hashes.
    pub fn words(&self, i: usize) -> &[u64] {
        &self.words[self.range(i)]
    }

    /// Whether word `w` of request i has an ASCII digit.
    pub fn has_digit(&self, i: usize, w: usize) -> bool {
        let j = self.range(i).start + w;
        self.word_digits.get(j / 64).is_some_and(|b| b >> (j % 64) & 1 == 1)
    }

    /// Request i's [`fingerprint`] and word count, `None` when it has no
    /// text.
    pub fn fingerprint(&self, i: usize) -> Option<(u64, usize)> {
        let fp = self.fingerprints[i];
        (fp != 0).then(|| (fp, self.fingerprint_words[i] as usize))
    }

    /// Checks the shape the contract promises (the host's features arrive
    /// across the boundary): `Err` says what is off.
    pub fn check(&self, n: usize) -> Result<(), String> {
        let ends_ok = self.word_ends.windows(2).all(|w| w[0] <= w[1])
            && self.word_ends.last().is_none_or(|&e| e as usize == self.words.len());
        if self.word_ends.len() != n || self.fingerprints.len() != n || self.fingerprint_words.len() != n || !ends_ok {
            return Err(format!("text features for {} of {n} requests, or out of order", self.word_ends.len()));
        }
        if self.word_digits.len() < self.words.len().div_ceil(64) {
            return Err("text features: digit bits missing".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod features_tests {
    use super::*;

    #[test]
    fn features_are_what_words_and_fingerprint_say() {
        let texts = [
            Some("Ticket #4821 v2 ok"),
            None,
            Some(""),
            Some("Don't  SHOW your reasoning"),
            Some("Straße, ÉTÉ; l\u{2019}été — İstanbul 日本語テキスト x²  ﬁne ΣΑΣ 'quoted' it's 3.14"),
            Some("'''  ... \u{2019}lead trail\u{2019} a\u{2019}b"),
        ];
        let f = TextFeatures::compute(texts);
        f.check(texts.len()).unwrap();
        let mut w = Words::new();
        for (i, t) in texts.iter().enumerate() {
            let Some(t) = t else {
                assert!(f.words(i).is_empty() && f.fingerprint(i).is_none());
                continue;
            };
            w.parse(t);
            assert_eq!(f.words(i), &w.hashes()[..w.len() - 1], "{t}");
            assert!((0..w.len() - 1).all(|j| f.has_digit(i, j) == w.has_digit(j)), "{t}");
            assert_eq!(f.fingerprint(i), Some(fingerprint(t)));
        }
        assert!(f.has_digit(0, 1) && f.has_digit(0, 2) && !f.has_digit(3, 1));
    }

    #[test]
    fn one_pass_fingerprints_equal_the_two_pass_ones() {
        let chars: Vec<char> = "aZ9 '.,-_\t\nQx0'".chars().chain(['é', '\u{2019}']).collect();
        let mut x = 1u64;
        for n in 0..2_000usize {
            let t: String = (0..n % 60)
                .map(|_| {
                    x = hash::mix(x);
                    chars[(x % chars.len() as u64) as usize]
                })
                .collect();
            let f = TextFeatures::compute([Some(t.as_str())]);
            assert_eq!(f.fingerprint(0), Some(fingerprint(&t)), "{t:?}");
            let mut w = Words::new();
            w.parse(&t);
            assert_eq!(f.words(0), &w.hashes()[..w.len() - 1], "{t:?}");
        }
    }

    #[test]
    fn digit_bits_cross_word_64() {
        let long: String = (0..70).map(|i| if i == 66 { "x9 ".to_string() } else { "w ".to_string() }).collect();
        let f = TextFeatures::compute([Some("a1"), Some(long.as_str())]);
        assert!(f.has_digit(0, 0));
        assert!(f.has_digit(1, 66) && !f.has_digit(1, 65) && !f.has_digit(1, 67));
        assert_eq!(f.word_digits.len(), 2);
    }

    #[test]
    fn a_misshapen_column_is_refused() {
        let mut f = TextFeatures::compute([Some("a b"), Some("c")]);
        assert!(f.check(3).is_err());
        f.word_ends[0] = 9;
        assert!(f.check(2).is_err());
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::fingerprint;

    #[test]
    fn words_and_numbers_count_case_spacing_and_punctuation_do_not() {
        let (a, n) = fingerprint("Explain entropy in biology, focusing on its history.");
        assert_eq!(n, 8);
        assert_eq!(fingerprint("explain   ENTROPY in biology focusing on its history!").0, a);
        assert_ne!(fingerprint("Explain entropy in physics, focusing on its history.").0, a);
        assert_ne!(fingerprint("A train leaves at 30 km/h").0, fingerprint("A train leaves at 31 km/h").0);
        assert_eq!(fingerprint("").1, 0);
        assert_eq!(fingerprint("don't stop").1, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &str) -> Words {
        let mut w = Words::new();
        w.parse(t);
        w
    }

    fn matches(set: &mut PhraseSet<&'static str>, t: &str) -> Vec<&'static str> {
        let w = words(t);
        let mut out = Vec::new();
        let mut found = Vec::new();
        set.find(&w, |m| found.push(m.pattern));
        for p in found {
            out.push(*set.value(p));
        }
        out
    }

    #[test]
    fn words_fold_case_punctuation_and_apostrophes() {
        let w = words("  Don't   SHOW-your\treasoning!! Étape ");
        let got: Vec<&str> = (0..w.len()).map(|i| w.word(i)).collect();
        assert_eq!(got, ["dont", "show", "your", "reasoning", "étape", ""]);
        for (i, word) in got.iter().enumerate().take(5) {
            assert_eq!(w.hashes()[i], word_hash(word), "{word}");
            assert!(!w.has_digit(i));
        }
        let w = words("Ticket #4821 v2 ok");
        assert_eq!((0..w.len()).map(|i| w.has_digit(i)).collect::<Vec<_>>(), [false, true, true, false, false]);
    }

    #[test]
    fn phrase_tolerates_gaps_case_and_alternatives() {
        let mut set = PhraseSet::new(2);
        set.add("show|explain your|the reasoning|thinking", "cot").unwrap();
        assert_eq!(matches(&mut set, "Please EXPLAIN all your   thinking."), ["cot"]);
        assert_eq!(matches(&mut set, "show me the reasoning"), ["cot"]);
        // Too far apart.
        assert!(matches(&mut set, "show a b c d e your reasoning").is_empty());
        // Order matters.
        assert!(matches(&mut set, "reasoning your show").is_empty());
    }

    #[test]
    fn phrase_never_spans_pushed_texts() {
        let mut set = PhraseSet::new(0);
        set.add("step by step", "s").unwrap();
        let mut w = Words::new();
        w.parse("take it step by");
        w.push("step now");
        let mut n = 0;
        set.find(&w, |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn each_pattern_reported_once() {
        let mut set = PhraseSet::new(0);
        set.add("step by step", "s").unwrap();
        assert_eq!(matches(&mut set, "step by step and step by step"), ["s"]);
    }

    #[test]
    fn bad_patterns_are_refused() {
        let mut set: PhraseSet<()> = PhraseSet::new(0);
        assert!(set.add("   ", ()).is_err());
        assert!(set.add("two-words here", ()).is_err());
    }
}
