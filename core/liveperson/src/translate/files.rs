//! LivePerson's `fileType` names and MIME types, both ways, and what a consumer may upload.

/// LivePerson `fileType` to a MIME type.
pub fn mime_of_file_type(file_type: &str) -> &'static str {
    match file_type.to_ascii_uppercase().as_str() {
        "JPG" | "JPEG" => "image/jpeg",
        "PNG" => "image/png",
        "GIF" => "image/gif",
        "PDF" => "application/pdf",
        "TXT" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The `fileType` LivePerson accepts for a consumer upload (docs/protocol/liveperson.md §5.10), from a MIME type.
pub fn upload_file_type(mime: &str) -> Option<&'static str> {
    match mime.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => Some("JPEG"),
        "image/png" => Some("PNG"),
        "image/gif" => Some("GIF"),
        _ => None,
    }
}

/// Largest consumer upload LivePerson accepts (docs/protocol/liveperson.md §5.10).
pub const MAX_UPLOAD_BYTES: usize = 3 * 1024 * 1024;
