//! A plain PDF of lines of text (A4, Helvetica, Windows-1252 so Italian letters print), enough
//! for a receipt to download, keep and print. Written by hand: a receipt needs no layout a
//! crate would earn its build time for (PDF 1.4, ISO 32000-1 §7: objects, one content stream
//! per page, the cross-reference table with each object's byte offset).

/// One line of the document: its text and whether it is a heading.
pub struct Line {
    pub text: String,
    pub heading: bool,
}

const PAGE_WIDTH: u32 = 595;
const PAGE_HEIGHT: u32 = 842;
const MARGIN: u32 = 56;
const BODY_SIZE: u32 = 10;
const LEADING: u32 = 14;
/// Characters per line at the body size (Helvetica averages about half an em).
const WRAP: usize = 92;

/// The PDF bytes of `lines`, wrapped and paged.
pub fn document(title: &str, lines: &[Line]) -> Vec<u8> {
    let pages = paginate(lines);
    // Objects: 1 catalog, 2 page tree, 3 font, 4 bold font, 5 information, then per page
    // its page object and its content stream.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let kids: String = (0..pages.len()).map(|i| format!("{} 0 R ", 6 + 2 * i)).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(format!("<< /Type /Pages /Kids [{kids}] /Count {} >>", pages.len()).into_bytes());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_vec());
    let mut info = b"<< /Producer (Sportello) /Title (".to_vec();
    info.extend(escaped(title));
    info.extend(b") >>");
    objects.push(info);
    for (i, page) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                7 + 2 * i
            )
            .into_bytes(),
        );
        let content = content_stream(page);
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend(b"\nendstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (n, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", n + 1).into_bytes());
        out.extend(body);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    out.extend(
        format!("trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .into_bytes(),
    );
    out
}

/// The lines wrapped at word boundaries and cut into pages.
fn paginate(lines: &[Line]) -> Vec<Vec<(String, bool)>> {
    let per_page = ((PAGE_HEIGHT - 2 * MARGIN) / LEADING) as usize;
    let mut wrapped: Vec<(String, bool)> = Vec::new();
    for line in lines {
        let mut current = String::new();
        for word in line.text.split(' ') {
            if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > WRAP {
                wrapped.push((std::mem::take(&mut current), line.heading));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        wrapped.push((current, line.heading));
    }
    let pages: Vec<Vec<(String, bool)>> = wrapped.chunks(per_page.max(1)).map(<[_]>::to_vec).collect();
    if pages.is_empty() {
        vec![Vec::new()]
    } else {
        pages
    }
}

fn content_stream(lines: &[(String, bool)]) -> Vec<u8> {
    let mut out = format!("BT\n{LEADING} TL\n{MARGIN} {} Td\n", PAGE_HEIGHT - MARGIN).into_bytes();
    for (text, heading) in lines {
        let (font, size) = if *heading { ("F2", BODY_SIZE + 2) } else { ("F1", BODY_SIZE) };
        out.extend(format!("/{font} {size} Tf\n(").into_bytes());
        out.extend(escaped(text));
        out.extend(b") Tj T*\n");
    }
    out.extend(b"ET");
    out
}

/// A PDF literal string's bytes: Windows-1252, with `\`, `(` and `)` escaped; a character the
/// encoding lacks becomes `?`.
fn escaped(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let byte = match c {
            '\\' | '(' | ')' => {
                out.push(b'\\');
                c as u8
            }
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line { text: text.into(), heading: false }
    }

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let lines: Vec<Line> = (0..120).map(|n| line(&format!("Riga {n}: caffè (bar) \\ città"))).collect();
        let pdf = document("Ricevuta", &lines);
        assert!(pdf.starts_with(b"%PDF-1.4\n") && pdf.ends_with(b"%%EOF\n"));
        let at = pdf.windows(10).rposition(|w| w == b"startxref\n").expect("startxref");
        let tail = std::str::from_utf8(&pdf[at + 10..]).expect("ascii");
        let xref: usize = tail.lines().next().and_then(|l| l.parse().ok()).expect("offset");
        assert_eq!(&pdf[xref..xref + 4], b"xref");
        let table = std::str::from_utf8(&pdf[xref..]).expect("the table is ascii");
        let entries: Vec<usize> = table
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .map(|l| l[..10].parse().expect("offset"))
            .collect();
        assert_eq!(entries.len(), 5 + 2 * 3, "five objects and two per page");
        for (n, offset) in entries.iter().enumerate() {
            let expected = format!("{} 0 obj", n + 1);
            assert_eq!(&pdf[*offset..*offset + expected.len()], expected.as_bytes(), "object {}", n + 1);
        }
        assert!(pdf.windows(8).any(|w| w == b"/Count 3"), "120 lines take three pages of 52");
    }

    #[test]
    fn italian_letters_are_kept_and_delimiters_escaped() {
        assert_eq!(escaped("è à (x) \\"), b"\xe8 \xe0 \\(x\\) \\\\".to_vec());
        assert_eq!(escaped("€ ✓"), b"\x80 ?".to_vec());
    }
}
