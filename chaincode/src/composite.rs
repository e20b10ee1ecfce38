//! Fabric's composite keys: `"\x00" + objectType + "\x00" + attr1 + "\x00" + …`.
//!
//! The leading U+0000 puts every composite key before every simple key in byte order, which is
//! why a range query with an empty start key (replaced by `"\x01"`) never returns them. A
//! partial-key query scans `[prefix, prefix + U+10FFFF)`; to keep both boundaries unambiguous,
//! U+0000 and U+10FFFF are forbidden inside the object type and the attributes, as in Fabric's
//! shims.

use thiserror::Error;

/// The first character of every composite key (Fabric's `compositeKeyNamespace`).
pub const COMPOSITE_KEY_NAMESPACE: char = '\u{0}';
/// The separator after the object type and after each attribute (Fabric's `minUnicodeRuneValue`).
const SEPARATOR: char = '\u{0}';
/// The largest Unicode scalar value; appended to a partial composite key to form the exclusive
/// end of its range (Fabric's `maxUnicodeRuneValue`, UTF-8 `F4 8F BF BF`).
pub const MAX_UNICODE_RUNE: char = '\u{10FFFF}';

/// Why a composite key could not be built or split.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompositeKeyError {
    /// An object type or attribute holds U+0000 or U+10FFFF, which would break key ordering.
    #[error(
        "input {input:?} contains {forbidden:?} at byte {position}; U+0000 and U+10FFFF are not \
         allowed in the object type or attributes of a composite key"
    )]
    ForbiddenCharacter {
        /// The offending object type or attribute.
        input: String,
        /// The forbidden character found.
        forbidden: char,
        /// Its byte offset inside `input`.
        position: usize,
    },
    /// The key does not have the composite-key shape (`"\x00" type "\x00" (attr "\x00")*`).
    #[error("key {0:?} is not a composite key (it must start and end with U+0000)")]
    NotComposite(String),
}

/// Checks one object type or attribute.
fn validate_component(input: &str) -> Result<(), CompositeKeyError> {
    match input
        .char_indices()
        .find(|&(_, c)| c == SEPARATOR || c == MAX_UNICODE_RUNE)
    {
        Some((position, forbidden)) => Err(CompositeKeyError::ForbiddenCharacter {
            input: input.to_owned(),
            forbidden,
            position,
        }),
        None => Ok(()),
    }
}

/// Builds the composite key for `object_type` and `attributes` (Fabric's `CreateCompositeKey`).
///
/// With fewer attributes than a full key it is the prefix used by partial-key queries.
pub fn create_composite_key<S: AsRef<str>>(
    object_type: &str,
    attributes: &[S],
) -> Result<String, CompositeKeyError> {
    validate_component(object_type)?;
    let mut key = String::with_capacity(
        2 + object_type.len()
            + attributes
                .iter()
                .map(|a| a.as_ref().len() + 1)
                .sum::<usize>(),
    );
    key.push(COMPOSITE_KEY_NAMESPACE);
    key.push_str(object_type);
    key.push(SEPARATOR);
    for attribute in attributes {
        let attribute = attribute.as_ref();
        validate_component(attribute)?;
        key.push_str(attribute);
        key.push(SEPARATOR);
    }
    Ok(key)
}

/// Splits a composite key into its object type and attributes (Fabric's `SplitCompositeKey`).
pub fn split_composite_key(key: &str) -> Result<(String, Vec<String>), CompositeKeyError> {
    let body = key
        .strip_prefix(COMPOSITE_KEY_NAMESPACE)
        .and_then(|rest| rest.strip_suffix(SEPARATOR))
        .ok_or_else(|| CompositeKeyError::NotComposite(key.to_owned()))?;
    let mut components = body.split(SEPARATOR).map(str::to_owned);
    let object_type = components
        .next()
        .expect("str::split always yields at least one item");
    Ok((object_type, components.collect()))
}

/// The `[start, end)` range covering every composite key that begins with `object_type` and
/// `attributes` (Fabric's `createRangeKeysForPartialCompositeKey`).
pub fn partial_composite_key_range<S: AsRef<str>>(
    object_type: &str,
    attributes: &[S],
) -> Result<(String, String), CompositeKeyError> {
    let start = create_composite_key(object_type, attributes)?;
    let mut end = start.clone();
    end.push(MAX_UNICODE_RUNE);
    Ok((start, end))
}
