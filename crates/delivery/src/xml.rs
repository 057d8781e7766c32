//! XML for institutions that take and answer it, through libxml2 (the `libxml` crate): a body
//! is parsed strictly (no recovery, no network) and validated against the institution's XSD by
//! libxml2's own validator; values are read from XML answers with XPath 1.0.
//!
//! libxml2's objects are not `Send`: every function here parses, works and frees before it
//! returns, holding one process-wide lock, so no libxml2 object outlives a call or crosses a
//! thread, and async code only ever sees `String`s.

use std::collections::BTreeMap;
use std::sync::Mutex;

use libxml::parser::{Parser, ParserOptions, XmlParseFailure};
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use libxml::tree::Document;
use libxml::xpath::Context;

/// Serialises the use of libxml2's global state (error handlers, parser initialisation).
static LIBXML: Mutex<()> = Mutex::new(());

/// Namespace prefixes an XPath may use → their URIs.
pub type Namespaces = BTreeMap<String, String>;

fn strict() -> ParserOptions<'static> {
    ParserOptions { recover: false, no_net: true, no_error: true, no_warning: true, ..ParserOptions::default() }
}

fn describe(errors: impl IntoIterator<Item = libxml::error::StructuredError>) -> Vec<String> {
    let mut out: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let message = e.message.unwrap_or_else(|| "invalid".into()).trim().to_string();
            match e.line {
                Some(line) if line > 0 => format!("line {line}: {message}"),
                _ => message,
            }
        })
        .collect();
    out.dedup();
    if out.is_empty() {
        out.push("not valid".into());
    }
    out
}

fn parse(text: &[u8]) -> Result<Document, Vec<String>> {
    match Parser::default().parse_string_with_diagnostics(text, strict()) {
        Ok((document, _)) => Ok(document),
        Err(XmlParseFailure::ParseFailed(diagnostics)) => {
            Err(describe(diagnostics).into_iter().map(|m| format!("not well-formed XML: {m}")).collect())
        }
        Err(other) => Err(vec![format!("not well-formed XML: {other}")]),
    }
}

fn compile_schema(xsd: &str) -> Result<SchemaValidationContext, Vec<String>> {
    let mut parser = SchemaParserContext::from_buffer(xsd);
    SchemaValidationContext::from_parser(&mut parser).map_err(describe)
}

/// Whether `xsd` is a schema libxml2 can compile.
pub fn check_schema(xsd: &str) -> Result<(), Vec<String>> {
    let _guard = LIBXML.lock().map_err(|_| vec!["the XML library is unavailable".to_string()])?;
    compile_schema(xsd).map(drop)
}

/// Checks `body` against `xsd`: every message names the line of the body at fault.
pub fn validate(xsd: &str, body: &[u8]) -> Result<(), Vec<String>> {
    let _guard = LIBXML.lock().map_err(|_| vec!["the XML library is unavailable".to_string()])?;
    let document = parse(body)?;
    let mut validator = compile_schema(xsd)
        .map_err(|e| e.into_iter().map(|m| format!("the schema itself: {m}")).collect::<Vec<_>>())?;
    validator.validate_document(&document).map_err(describe)
}

/// Whether `expression` is a well-formed XPath 1.0 expression.
pub fn is_xpath(expression: &str) -> bool {
    !expression.contains('\0') && LIBXML.lock().is_ok_and(|_guard| libxml::xpath::is_well_formed_xpath(expression))
}

/// For each expression, the text of every node it selects (or the string it computes, for an
/// expression such as `string(...)`), in document order; blank texts left out.
pub fn select(text: &str, namespaces: &Namespaces, expressions: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let _guard = LIBXML.lock().map_err(|_| "the XML library is unavailable".to_string())?;
    let document = parse(text.as_bytes()).map_err(|e| e.join("; "))?;
    let context = Context::new(&document).map_err(|()| "no XPath context".to_string())?;
    for (prefix, uri) in namespaces {
        context.register_namespace(prefix, uri).map_err(|()| format!("namespace prefix `{prefix}`"))?;
    }
    let mut out = Vec::with_capacity(expressions.len());
    for expression in expressions {
        let object = context.evaluate(expression).map_err(|()| format!("XPath `{expression}` cannot be evaluated"))?;
        let values =
            if object.get_number_of_nodes() > 0 { object.get_nodes_as_str() } else { vec![object.to_string()] };
        out.push(values.into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect());
    }
    Ok(out)
}

/// A document read as a tree of values, for the side that takes XML (the simulated
/// institutions): the root's name, and its content where an element with child elements is an
/// object of them by local name (a name repeated becomes an array), any other element its
/// text, and attributes `@name` entries.
pub fn to_value(text: &[u8]) -> Result<(String, serde_json::Value), Vec<String>> {
    let _guard = LIBXML.lock().map_err(|_| vec!["the XML library is unavailable".to_string()])?;
    let document = parse(text)?;
    let root = document.get_root_element().ok_or_else(|| vec!["no root element".to_string()])?;
    Ok((root.get_name(), element_value(&root, 0)))
}

fn element_value(node: &libxml::tree::Node, depth: usize) -> serde_json::Value {
    use serde_json::{Map, Value};
    let children = node.get_child_elements();
    let attributes = node.get_properties();
    if (children.is_empty() && attributes.is_empty()) || depth > 32 {
        return Value::String(node.get_content().trim().to_string());
    }
    let mut map = Map::new();
    for (name, value) in attributes {
        map.insert(format!("@{name}"), Value::String(value));
    }
    for child in &children {
        let value = element_value(child, depth + 1);
        match map.get_mut(&child.get_name()) {
            Some(Value::Array(items)) => items.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                map.insert(child.get_name(), value);
            }
        }
    }
    if children.is_empty() {
        map.insert("#text".into(), Value::String(node.get_content().trim().to_string()));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XSD: &str = r#"<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" xmlns="urn:t"
           elementFormDefault="qualified">
  <xs:element name="domanda">
    <xs:complexType><xs:sequence>
      <xs:element name="codice_fiscale" type="cf"/>
      <xs:element name="nome" type="xs:string"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:simpleType name="cf"><xs:restriction base="xs:string">
    <xs:pattern value="[A-Z0-9]{16}|[0-9]{11}"/>
  </xs:restriction></xs:simpleType>
</xs:schema>"#;

    #[test]
    fn a_body_is_validated_against_its_schema() {
        let good = r#"<domanda xmlns="urn:t"><codice_fiscale>RSSMRA45C12F205C</codice_fiscale><nome>A &amp; B</nome></domanda>"#;
        assert_eq!(validate(XSD, good.as_bytes()), Ok(()));
        let bad = "<domanda xmlns=\"urn:t\">\n<codice_fiscale>rss</codice_fiscale><nome>x</nome></domanda>";
        let errors = validate(XSD, bad.as_bytes()).expect_err("invalid");
        assert!(errors.iter().any(|e| e.starts_with("line 2:") && e.contains("codice_fiscale")), "{errors:?}");
        let broken = validate(XSD, b"<domanda xmlns=\"urn:t\"><nome>x</domanda>").expect_err("malformed");
        assert!(broken[0].starts_with("not well-formed XML"), "{broken:?}");
        assert!(check_schema("<xs:schema").is_err());
        assert_eq!(check_schema(XSD), Ok(()));
    }

    #[test]
    fn xpath_reads_values_with_namespaces() {
        let answer = r#"<esito xmlns="urn:t"><protocollo> INPS-1 </protocollo>
            <errore campo="a/b">uno</errore><errore campo="c">due</errore></esito>"#;
        let ns = Namespaces::from([("t".to_string(), "urn:t".to_string())]);
        let got = select(
            answer,
            &ns,
            &[
                "/t:esito/t:protocollo",
                "//t:errore/@campo",
                "//t:errore",
                "string(/t:esito/t:nulla)",
                "count(//t:errore)",
            ],
        )
        .expect("select");
        assert_eq!(got[0], vec!["INPS-1"]);
        assert_eq!(got[1], vec!["a/b", "c"]);
        assert_eq!(got[2], vec!["uno", "due"]);
        assert!(got[3].is_empty());
        assert_eq!(got[4], vec!["2"]);
        assert!(is_xpath("/t:esito/t:protocollo") && !is_xpath("/t:esito[") && !is_xpath("a\0b"));
        assert!(select("<a>", &ns, &["/a"]).is_err());
    }

    #[test]
    fn a_document_reads_as_a_tree_of_values() {
        let (root, value) =
            to_value(br#"<d xmlns="urn:t"><a><b>1</b><b>2</b></a><c k="v">t</c><e/></d>"#).expect("tree");
        assert_eq!(root, "d");
        assert_eq!(value, serde_json::json!({"a": {"b": ["1", "2"]}, "c": {"@k": "v", "#text": "t"}, "e": ""}));
    }
}
