//! The blank return template for a period (SPEC §3), written with rust_xlsxwriter into a buffer.
//! Owns the layout a submitter sees: the `Return` sheet (title, header fields, the derived-rate
//! note, the measure table with validated input cells), the `Guidance` sheet (the year's full
//! wording, rule guidance, links) and the hidden `About` sheet. PURE: takes a definition and
//! returns bytes; it never touches files or the clock. It must not decide what a valid return is
//! — that is `locate` and the validator; it only writes the layout they read.

use crate::collection::{Definition, Organisation, PeriodId};
use rust_xlsxwriter::{
    Color, DataValidation, DataValidationErrorStyle, DataValidationRule, Format, FormatAlign,
    FormatBorder, ProtectionOptions, Workbook, Worksheet, XlsxError,
};

/// The sheet that holds the return; it is written first so it is the first visible sheet.
pub const RETURN_SHEET: &str = "Return";
pub const GUIDANCE_SHEET: &str = "Guidance";
/// Hidden; records what the template was written for.
pub const ABOUT_SHEET: &str = "About";

/// The header field labels, in the order they appear in column A (SPEC §3).
pub const HEADER_LABELS: [&str; 6] = [
    "Organisation code",
    "Organisation name",
    "Reporting period",
    "Contact name",
    "Contact email",
    "Contact telephone",
];

/// Zero-based row of the first header field (`Organisation code` in A5).
pub const FIRST_HEADER_ROW: u32 = 4;

/// The measure table's column headings, columns A–D.
pub const TABLE_HEADINGS: [&str; 4] = ["KPI", "Description", "Value", "Comment"];
/// Zero-based column of the Value cells (C).
pub const VALUE_COL: u16 = 2;
const COMMENT_COL: u16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("period {period} is not one of the periods of collection {collection}")]
    PeriodNotInCollection { period: PeriodId, collection: String },
    #[error("collection {0} has no measures to put in a template")]
    NoMeasures(String),
    #[error("could not write the workbook: {0}")]
    Xlsx(#[from] XlsxError),
}

/// Where things landed on the Return sheet; zero-based rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnLayout {
    /// The row holding `KPI | Description | Value | Comment`.
    pub table_header_row: u32,
    /// The first measure row; measures follow in definition order.
    pub first_measure_row: u32,
    /// The heading of the note on derived rates; one line per rate follows.
    pub derived_note_row: u32,
}

impl ReturnLayout {
    /// The layout the template uses for a definition with `derived` derived measures.
    pub fn for_definition(def: &Definition) -> ReturnLayout {
        // title (3 rows), blank, 6 header fields, blank, note heading + one line per rate, blank
        let derived_note_row = FIRST_HEADER_ROW + HEADER_LABELS.len() as u32 + 1;
        let table_header_row = derived_note_row + 1 + def.derived.len() as u32 + 1;
        ReturnLayout { table_header_row, first_measure_row: table_header_row + 1, derived_note_row }
    }
}

/// Write the blank return for `period` of `def`, prefilled with `org`'s code and name when given.
pub fn write_template(
    def: &Definition,
    period: PeriodId,
    org: Option<&Organisation>,
) -> Result<Vec<u8>, TemplateError> {
    if def.period(period).is_none() {
        return Err(TemplateError::PeriodNotInCollection { period, collection: def.id.clone() });
    }
    if def.measures.is_empty() {
        return Err(TemplateError::NoMeasures(def.id.clone()));
    }
    let styles = Styles::new();
    let mut wb = Workbook::new();
    wb.set_properties(
        &rust_xlsxwriter::DocProperties::new()
            .set_title(format!("{} {}", def.title, period.label()))
            .set_comment(format!("{} template version {}", def.id, def.template_version)),
    );
    write_return(wb.add_worksheet(), def, period, org, &styles)?;
    write_guidance(wb.add_worksheet(), def, &styles)?;
    write_about(wb.add_worksheet(), def, period, org)?;
    Ok(wb.save_to_buffer()?)
}

/// Formats shared by the sheets.
struct Styles {
    title: Format,
    bold: Format,
    note: Format,
    heading: Format,
    label: Format,
    input_text: Format,
    input_number: Format,
    prefilled: Format,
    wrap: Format,
    link: Format,
}

impl Styles {
    fn new() -> Styles {
        // Pale yellow with a border is the convention NHS returns use for "type here".
        let input = Format::new()
            .set_background_color(Color::RGB(0xFFF2CC))
            .set_border(FormatBorder::Thin)
            .set_border_color(Color::RGB(0xBF9000))
            .set_unlocked();
        Styles {
            title: Format::new().set_bold().set_font_size(14),
            bold: Format::new().set_bold(),
            note: Format::new().set_italic().set_text_wrap().set_align(FormatAlign::Top),
            heading: Format::new()
                .set_bold()
                .set_font_color(Color::White)
                .set_background_color(Color::RGB(0x005EB8))
                .set_border(FormatBorder::Thin),
            label: Format::new().set_bold().set_border(FormatBorder::Thin),
            // Text format keeps codes like `5N1` and telephone numbers' leading zeros as typed.
            input_text: input.clone().set_num_format("@"),
            input_number: input.set_num_format("#,##0").set_align(FormatAlign::Right),
            prefilled: Format::new()
                .set_background_color(Color::RGB(0xE8EDEE))
                .set_border(FormatBorder::Thin)
                .set_num_format("@"),
            wrap: Format::new().set_text_wrap().set_align(FormatAlign::Top),
            link: Format::new()
                .set_font_color(Color::Blue)
                .set_underline(rust_xlsxwriter::FormatUnderline::Single),
        }
    }
}

fn year_label(def: &Definition) -> String {
    format!("{}/{:02}", def.start_year, (def.start_year + 1) % 100)
}

fn write_return(
    ws: &mut Worksheet,
    def: &Definition,
    period: PeriodId,
    org: Option<&Organisation>,
    st: &Styles,
) -> Result<(), TemplateError> {
    ws.set_name(RETURN_SHEET)?;
    ws.write_string_with_format(0, 0, &def.title, &st.title)?;
    ws.write_string(
        1,
        0,
        format!(
            "Reporting period {} (collection year {}), template version {}",
            period.label(),
            year_label(def),
            def.template_version
        ),
    )?;
    ws.merge_range(
        2,
        0,
        2,
        COMMENT_COL,
        "Fill in the yellow cells. Values are whole numbers of people (0 where there were none). \
         Email this file back with IAPT and your organisation in the subject line.",
        &st.note,
    )?;
    ws.set_row_height(2, 30)?;

    write_header_fields(ws, period, org, st)?;
    let layout = ReturnLayout::for_definition(def);
    write_derived_note(ws, def, layout.derived_note_row, st)?;
    write_measure_table(ws, def, layout, st)?;
    let last_row = layout.first_measure_row + def.measures.len() as u32 - 1;
    setup_return_page(ws, last_row)?;
    Ok(())
}

fn write_header_fields(
    ws: &mut Worksheet,
    period: PeriodId,
    org: Option<&Organisation>,
    st: &Styles,
) -> Result<(), TemplateError> {
    let prefilled = [
        org.map(|o| o.code.clone()),
        org.map(|o| o.name.clone()),
        Some(period.label()),
        None,
        None,
        None,
    ];
    for (i, (label, value)) in HEADER_LABELS.iter().zip(prefilled).enumerate() {
        let row = FIRST_HEADER_ROW + i as u32;
        ws.write_string_with_format(row, 0, *label, &st.label)?;
        match value {
            // Prefilled values stay editable: a PCT may send the return for a merged successor.
            Some(v) => {
                ws.write_string_with_format(row, 1, v, &st.prefilled.clone().set_unlocked())?
            }
            None => ws.write_blank(row, 1, &st.input_text)?,
        };
    }
    Ok(())
}

/// The derived rates are computed on receipt; the note tells the submitter how, above the table
/// (below it, a stray line could be taken for a measure row by a reader scanning column A).
fn write_derived_note(
    ws: &mut Worksheet,
    def: &Definition,
    row: u32,
    st: &Styles,
) -> Result<(), TemplateError> {
    ws.write_string_with_format(
        row,
        0,
        "Derived rates (worked out from your figures when the return is received; do not enter them):",
        &st.bold,
    )?;
    for (i, d) in def.derived.iter().enumerate() {
        let r = row + 1 + i as u32;
        ws.merge_range(r, 0, r, COMMENT_COL, &derived_line(d), &st.note)?;
        ws.set_row_height(r, 30)?;
    }
    Ok(())
}

/// `Recovery rate = KPI6 / (KPI5 − KPI6b); target 50%. <explanation>`
fn derived_line(d: &crate::collection::Derived) -> String {
    let mut denom = String::new();
    for (i, (sign, term)) in d.denominator.iter().enumerate() {
        match (i, *sign < 0) {
            (0, true) => denom.push('−'),
            (0, false) => {}
            (_, true) => denom.push_str(" − "),
            (_, false) => denom.push_str(" + "),
        }
        denom.push_str(term);
    }
    if d.denominator.len() > 1 {
        denom = format!("({denom})");
    }
    let mut line = format!("{} = {} / {}", d.label, d.numerator, denom);
    if let Some(t) = d.target {
        line.push_str(&format!("; target {}%", trim_float(t * 100.0)));
    }
    if !d.explanation.trim().is_empty() {
        line.push_str(". ");
        line.push_str(d.explanation.trim());
    }
    line
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn write_measure_table(
    ws: &mut Worksheet,
    def: &Definition,
    layout: ReturnLayout,
    st: &Styles,
) -> Result<(), TemplateError> {
    for (col, heading) in TABLE_HEADINGS.iter().enumerate() {
        ws.write_string_with_format(layout.table_header_row, col as u16, *heading, &st.heading)?;
    }
    for (i, m) in def.measures.iter().enumerate() {
        let row = layout.first_measure_row + i as u32;
        ws.write_string_with_format(row, 0, &m.id, &st.label)?;
        let desc = if m.required { m.label.clone() } else { format!("{} (optional)", m.label) };
        ws.write_string_with_format(row, 1, desc, &st.wrap.clone().set_border(FormatBorder::Thin))?;
        ws.write_blank(row, VALUE_COL, &st.input_number)?;
        ws.write_blank(row, COMMENT_COL, &st.input_text.clone().set_text_wrap())?;
    }
    let last = layout.first_measure_row + def.measures.len() as u32 - 1;
    let dv = DataValidation::new()
        .allow_whole_number(DataValidationRule::GreaterThanOrEqualTo(0))
        .ignore_blank(true)
        .set_input_title("Whole number")?
        .set_input_message("Enter the number of people as a whole number, 0 or more.")?
        .set_error_style(DataValidationErrorStyle::Stop)
        .set_error_title("Not a whole number")?
        .set_error_message(
            "This cell takes a whole number of people, 0 or more: no decimals, text or negative \
             numbers. See the Guidance sheet for what each KPI counts.",
        )?;
    ws.add_data_validation(layout.first_measure_row, VALUE_COL, last, VALUE_COL, &dv)?;
    Ok(())
}

fn setup_return_page(ws: &mut Worksheet, last_row: u32) -> Result<(), TemplateError> {
    ws.set_column_width(0, 22)?;
    ws.set_column_width(1, 62)?;
    ws.set_column_width(VALUE_COL, 14)?;
    ws.set_column_width(COMMENT_COL, 40)?;
    ws.set_paper_size(9); // A4
    ws.set_portrait();
    ws.set_print_fit_to_pages(1, 0);
    ws.set_print_area(0, 0, last_row, COMMENT_COL)?;
    ws.set_footer("&L&A&RPage &P of &N");
    ws.set_active(true);
    // Protection without a password: the layout stays put, only the input cells take typing;
    // an analyst who must edit the layout can unprotect it from the Review menu.
    ws.protect_with_options(&ProtectionOptions {
        format_columns: true,
        format_rows: true,
        ..ProtectionOptions::default()
    });
    Ok(())
}

fn write_guidance(ws: &mut Worksheet, def: &Definition, st: &Styles) -> Result<(), TemplateError> {
    ws.set_name(GUIDANCE_SHEET)?;
    ws.write_string_with_format(
        0,
        0,
        format!("{} {}: guidance", def.title, year_label(def)),
        &st.title,
    )?;
    let mut row = 2;
    for (col, h) in ["KPI", "Label", "What to count", "When", "Unit", "Required"].iter().enumerate()
    {
        ws.write_string_with_format(row, col as u16, *h, &st.heading)?;
    }
    for m in &def.measures {
        row += 1;
        ws.write_string_with_format(row, 0, &m.id, &st.bold)?;
        ws.write_string_with_format(row, 1, &m.label, &st.wrap)?;
        ws.write_string_with_format(row, 2, &m.wording, &st.wrap)?;
        ws.write_string_with_format(row, 3, &m.period_basis, &st.wrap)?;
        ws.write_string_with_format(row, 4, &m.unit, &st.wrap)?;
        ws.write_string_with_format(row, 5, if m.required { "yes" } else { "optional" }, &st.wrap)?;
    }
    row += 2;
    for (col, h) in ["Rule", "Severity", "Check", "How to put it right"].iter().enumerate() {
        ws.write_string_with_format(row, col as u16, *h, &st.heading)?;
    }
    for r in &def.rules {
        row += 1;
        let severity = match r.severity {
            crate::report::Severity::Error => "error",
            crate::report::Severity::Warning => "warning",
        };
        ws.write_string_with_format(row, 0, &r.id, &st.bold)?;
        ws.write_string_with_format(row, 1, severity, &st.wrap)?;
        ws.write_string_with_format(row, 2, &r.message, &st.wrap)?;
        ws.write_string_with_format(row, 3, &r.guidance, &st.wrap)?;
    }
    if !def.guidance_links.is_empty() {
        row += 2;
        ws.write_string_with_format(row, 0, "Guidance documents", &st.bold)?;
        for l in &def.guidance_links {
            row += 1;
            ws.write_string(row, 0, &l.title)?;
            ws.write_url_with_format(row, 2, l.url.as_str(), &st.link)?;
        }
    }
    for (col, width) in [(0, 12.0), (1, 34.0), (2, 70.0), (3, 40.0), (4, 12.0), (5, 10.0)] {
        ws.set_column_width(col, width)?;
    }
    ws.set_paper_size(9);
    ws.set_landscape();
    ws.set_print_fit_to_pages(1, 0);
    ws.set_footer("&L&A&RPage &P of &N");
    Ok(())
}

fn write_about(
    ws: &mut Worksheet,
    def: &Definition,
    period: PeriodId,
    org: Option<&Organisation>,
) -> Result<(), TemplateError> {
    ws.set_name(ABOUT_SHEET)?;
    let mut rows = vec![
        ("Collection id", def.id.clone()),
        ("Collection year", year_label(def)),
        ("Template version", def.template_version.clone()),
        ("Reporting period", period.to_string()),
    ];
    if let Some(o) = org {
        rows.push(("Organisation code", o.code.clone()));
    }
    rows.push(("Written by", format!("iapt-intake {}", env!("CARGO_PKG_VERSION"))));
    for (i, (k, v)) in rows.iter().enumerate() {
        ws.write_string(i as u32, 0, *k)?;
        ws.write_string(i as u32, 1, v)?;
    }
    ws.set_column_width(0, 20)?;
    ws.set_column_width(1, 30)?;
    ws.set_hidden(true);
    Ok(())
}

#[cfg(test)]
mod tests;
