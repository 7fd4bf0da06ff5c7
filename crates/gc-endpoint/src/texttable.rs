//! The endpoint table `list` prints: texttable 1.6.7's grid, column sizing, cell formatting and
//! Python `textwrap` wrapping, plus the terminal width that drives them.

use std::io::IsTerminal;

use crate::pyfmt::{fmt_exp, py_float};

/// Python's `shutil.get_terminal_size().columns`: `$COLUMNS`, else the terminal on stdout,
/// else 80.
pub fn terminal_columns() -> usize {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        if let Ok(ws) = rustix::termios::tcgetwinsize(&stdout) {
            if ws.ws_col > 0 {
                return usize::from(ws.ws_col);
            }
        }
    }
    80
}

/// texttable's automatic cell formatting (`dtype 'a'`): numbers in a cell are reformatted.
pub fn auto_format(cell: &str) -> String {
    let Some(f) = py_float(cell) else {
        return cell.to_string();
    };
    if f.abs() > 1e8 {
        fmt_exp(f, 3)
    } else if f.is_nan() {
        cell.to_string()
    } else if f - f.round() == 0.0 {
        format!("{}", f as i64)
    } else {
        format!("{f:.3}")
    }
}

/// texttable's cell width: longest line, tabs advancing to the next multiple of 8.
fn len_cell(cell: &str) -> usize {
    cell.split('\n')
        .map(|line| {
            let parts: Vec<&str> = line.split('\t').collect();
            let mut len = 0;
            for (i, part) in parts.iter().enumerate() {
                len += part.chars().count();
                if i + 1 < parts.len() {
                    len = (len / 8 + 1) * 8;
                }
            }
            len
        })
        .max()
        .unwrap_or(0)
}

/// The `list` table: three columns (id, status, name), header centred, grid borders.
pub fn endpoint_table(rows: &[[String; 3]], columns: usize) -> String {
    let header = ["Endpoint ID", "Status", "Endpoint Name"].map(String::from);
    let rows: Vec<[String; 3]> = rows
        .iter()
        .map(|r| [auto_format(&r[0]), auto_format(&r[1]), auto_format(&r[2])])
        .collect();
    let raw_widths = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain(std::iter::once(header[col].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let (want_id, want_status) = (raw_widths(0), raw_widths(1));

    let mut width = fit(&natural_widths(&header, &rows), columns.max(68));
    let mut name_w = width[2] as isize;
    if width[0] < want_id {
        name_w -= (want_id - width[0]) as isize;
        width[0] = want_id;
    }
    if width[1] < want_status {
        name_w -= (want_status - width[1]) as isize;
        width[1] = want_status;
    }
    width[2] = name_w.max(10) as usize;
    draw(&header, &rows, &width)
}

/// texttable's column sizing under a maximum table width: when the natural widths do not
/// fit, the available width is dealt out one character at a time, column by column.
fn fit(natural: &[usize], max_width: usize) -> Vec<usize> {
    let n = natural.len();
    let deco = 3 * n.saturating_sub(1) + 4;
    if natural.iter().sum::<usize>() + deco <= max_width {
        return natural.to_vec();
    }
    let mut available = max_width.saturating_sub(deco);
    let mut new = vec![0usize; n];
    let mut i = 0;
    while available > 0 && new.iter().zip(natural).any(|(a, b)| a < b) {
        if new[i] < natural[i] {
            new[i] += 1;
            available -= 1;
        }
        i = (i + 1) % n;
    }
    new
}

/// The grid: header row (centred), `=` rule, rows separated by `-` rules.
fn draw<R: AsRef<[String]>>(header: &[String], rows: &[R], width: &[usize]) -> String {
    let hline = |c: char| {
        let inner: Vec<String> = width.iter().map(|&w| c.to_string().repeat(w)).collect();
        let sep = format!("{c}+{c}");
        format!("+{c}{}{c}+\n", inner.join(&sep))
    };
    let mut out = hline('-');
    out.push_str(&draw_line(header, width, true));
    out.push_str(&hline('='));
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&draw_line(row.as_ref(), width, false));
        if i + 1 < rows.len() {
            out.push_str(&hline('-'));
        }
    }
    out.push_str(&hline('-'));
    out.pop();
    out
}

/// A texttable grid of any number of columns, at most `max_width` wide (the SDK's
/// `print_table`, e.g. `whoami`).
pub fn table(header: &[&str], rows: &[Vec<String>], max_width: usize) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut r: Vec<String> = r.iter().map(|c| auto_format(c)).collect();
            r.resize(header.len(), String::new());
            r
        })
        .collect();
    draw(
        &header,
        &rows,
        &fit(&natural_widths(&header, &rows), max_width),
    )
}

/// Each column's widest cell (header included), in texttable's measure.
fn natural_widths<R: AsRef<[String]>>(header: &[String], rows: &[R]) -> Vec<usize> {
    (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c).map(|cell| len_cell(cell)))
                .chain(std::iter::once(len_cell(&header[c])))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

fn draw_line(cells: &[String], width: &[usize], header: bool) -> String {
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(width)
        .map(|(cell, &w)| {
            let mut lines = Vec::new();
            for part in cell.split('\n') {
                if part.trim().is_empty() {
                    lines.push(String::new());
                } else {
                    lines.extend(wrap(part, w));
                }
            }
            lines
        })
        .collect();
    let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
    let mut out = String::new();
    for i in 0..height {
        out.push_str("| ");
        for (col, lines) in wrapped.iter().enumerate() {
            let text = lines.get(i).map(String::as_str).unwrap_or("");
            let fill = width[col].saturating_sub(text.chars().count());
            if header {
                out.push_str(&" ".repeat(fill / 2));
                out.push_str(text);
                out.push_str(&" ".repeat(fill / 2 + fill % 2));
            } else {
                out.push_str(text);
                out.push_str(&" ".repeat(fill));
            }
            if col + 1 < wrapped.len() {
                out.push_str(" | ");
            }
        }
        out.push_str(" |\n");
    }
    out
}

fn is_letter(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !c.is_numeric()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_word_punct(c: char) -> bool {
    is_word(c) || "!\"'&.,?".contains(c)
}

/// Python `textwrap`'s chunking (`TextWrapper.wordsep_re`) of one line.
fn chunks(text: &str) -> Vec<String> {
    let s: Vec<char> = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let n = s.len();
    let at = |i: usize| s.get(i).copied();
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        if s[start] == ' ' {
            let mut e = start;
            while e < n && s[e] == ' ' {
                e += 1;
            }
            out.push(s[start..e].iter().collect());
            start = e;
            continue;
        }
        // em-dash between words: (?<=wp) -{2,} (?=\w)
        if start > 0 && is_word_punct(s[start - 1]) && s[start] == '-' {
            let mut e = start;
            while e < n && s[e] == '-' {
                e += 1;
            }
            if e - start >= 2 && at(e).is_some_and(is_word) {
                out.push(s[start..e].iter().collect());
                start = e;
                continue;
            }
        }
        // word, possibly hyphenated: nws+? followed by one of the alternatives
        let mut end = n;
        let mut k = start + 1;
        while k <= n {
            if s[k - 1] == ' ' {
                end = k - 1;
                break;
            }
            // hyphenated word: the next char is '-', taken into the chunk
            if at(k) == Some('-') {
                let after = k + 1;
                let lb1 = after >= 3 && is_letter(s[after - 3]) && is_letter(s[after - 2]);
                let lb2 = after >= 4
                    && is_letter(s[after - 4])
                    && s[after - 3] == '-'
                    && is_letter(s[after - 2]);
                let la = at(after).is_some_and(is_letter)
                    && (at(after + 1).is_some_and(is_letter)
                        || (at(after + 1) == Some('-') && at(after + 2).is_some_and(is_letter)));
                if (lb1 || lb2) && la {
                    end = after;
                    break;
                }
            }
            // end of word
            if k == n || s[k] == ' ' {
                end = k;
                break;
            }
            // em-dash following
            if is_word_punct(s[k - 1]) && at(k) == Some('-') && at(k + 1) == Some('-') {
                let mut e = k;
                while e < n && s[e] == '-' {
                    e += 1;
                }
                if at(e).is_some_and(is_word) {
                    end = k;
                    break;
                }
            }
            k += 1;
        }
        out.push(s[start..end].iter().collect());
        start = end;
    }
    out
}

/// `textwrap.wrap(text, width)` with Python's defaults.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut chunks: Vec<Vec<char>> = chunks(text).iter().map(|c| c.chars().collect()).collect();
    chunks.reverse();
    let mut lines: Vec<String> = Vec::new();
    let width = width.max(1);
    while !chunks.is_empty() {
        let mut cur: Vec<Vec<char>> = Vec::new();
        let mut cur_len = 0;
        if chunks.last().is_some_and(|c| c.iter().all(|&x| x == ' ')) && !lines.is_empty() {
            chunks.pop();
        }
        while let Some(c) = chunks.last() {
            if cur_len + c.len() <= width {
                cur_len += c.len();
                cur.push(chunks.pop().unwrap_or_default());
            } else {
                break;
            }
        }
        if chunks.last().is_some_and(|c| c.len() > width) {
            let space_left = width - cur_len;
            let chunk = chunks.pop().unwrap_or_default();
            let mut end = space_left;
            if chunk.len() > space_left {
                if let Some(h) = chunk[..space_left].iter().rposition(|&c| c == '-') {
                    if h > 0 && chunk[..h].iter().any(|&c| c != '-') {
                        end = h + 1;
                    }
                }
            }
            cur.push(chunk[..end].to_vec());
            chunks.push(chunk[end..].to_vec());
        }
        if cur.last().is_some_and(|c| c.iter().all(|&x| x == ' ')) {
            cur.pop();
        }
        if !cur.is_empty() {
            lines.push(cur.concat().into_iter().collect());
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, st: &str, name: &str) -> [String; 3] {
        [id.into(), st.into(), name.into()]
    }

    #[test]
    fn spec_example_table() {
        let t = endpoint_table(
            &[
                row("bbbbbbbb-2222-3333-4444-555555555555", "Running", "ha1"),
                row("None", "Initialized", "su1"),
            ],
            80,
        );
        let expected = "\
+--------------------------------------+-------------+---------------+
|             Endpoint ID              |   Status    | Endpoint Name |
+======================================+=============+===============+
| bbbbbbbb-2222-3333-4444-555555555555 | Running     | ha1           |
+--------------------------------------+-------------+---------------+
| None                                 | Initialized | su1           |
+--------------------------------------+-------------+---------------+";
        assert_eq!(t, expected);
    }

    #[test]
    fn textwrap_behaviour() {
        assert_eq!(wrap("Endpoint Name", 10), vec!["Endpoint", "Name"]);
        assert_eq!(wrap("abcdefghijklmnop", 10), vec!["abcdefghij", "klmnop"]);
        assert_eq!(
            wrap("my-long-endpoint-name", 10),
            vec!["my-long-", "endpoint-", "name"]
        );
        assert_eq!(auto_format("007"), "7");
        assert_eq!(auto_format("1.5"), "1.500");
        assert_eq!(auto_format("None"), "None");
    }
}
