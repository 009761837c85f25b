//! Return workbooks as a PCT analyst fills in the template: a `Return` sheet with the header
//! labels in column A and their values in column B, and the `KPI | Description | Value | Comment`
//! table from row 10, so KPI1's value is C11 … KPI7's is C19.
//!
//! The creation date is fixed, so the same return is the same bytes every run (the Message-IDs
//! and references derived from a message's hash stay the same too).

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook};

/// The measures in template order with figures that pass every rule of 2011/12.
pub const GOOD: [(&str, f64); 9] = [
    ("KPI1", 68653.0),
    ("KPI2", 900.0),
    ("KPI3a", 120.0),
    ("KPI3b", 80.0),
    ("KPI4", 700.0),
    ("KPI5", 400.0),
    ("KPI6", 150.0),
    ("KPI6b", 60.0),
    ("KPI7", 20.0),
];

/// Zero-based row of the table header (`KPI | Description | Value | Comment`).
const TABLE_ROW: u32 = 9;

/// A value cell as typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Num(f64),
    Text(&'static str),
    Blank,
}

#[derive(Debug, Clone)]
pub struct ReturnBook {
    pub org: String,
    pub name: String,
    pub period: String,
    pub values: Vec<(&'static str, Val)>,
}

/// The A1 address of a measure's Value cell in a `ReturnBook`.
pub fn value_cell(kpi: &str) -> String {
    let i = GOOD.iter().position(|(id, _)| *id == kpi).expect("a measure of 2011/12");
    format!("C{}", TABLE_ROW + 2 + i as u32)
}

impl ReturnBook {
    /// A complete, consistent Q1 2011/12 return.
    pub fn good(org: &str, name: &str) -> ReturnBook {
        ReturnBook {
            org: org.into(),
            name: name.into(),
            period: "Q1 2011/12".into(),
            values: GOOD.iter().map(|(id, v)| (*id, Val::Num(*v))).collect(),
        }
    }

    pub fn leeds() -> ReturnBook {
        ReturnBook::good("5N1", "Leeds PCT")
    }

    pub fn set(mut self, kpi: &str, v: Val) -> ReturnBook {
        let slot = self.values.iter_mut().find(|(id, _)| *id == kpi).expect("known measure");
        slot.1 = v;
        self
    }

    pub fn xlsx(&self) -> Vec<u8> {
        let mut book = Workbook::new();
        let created = ExcelDateTime::from_ymd(2011, 7, 1).expect("date");
        book.set_properties(&DocProperties::new().set_creation_datetime(&created));
        let sheet = book.add_worksheet();
        sheet.set_name("Return").expect("sheet name");
        let header = [
            ("Organisation code", self.org.as_str()),
            ("Organisation name", self.name.as_str()),
            ("Reporting period", self.period.as_str()),
            ("Contact name", "Ann Analyst"),
            ("Contact email", "ann.analyst@leeds.nhs.test"),
        ];
        sheet.write_string(0, 0, "IAPT Key Performance Indicators Quarterly Return").expect("A1");
        for (i, (label, value)) in header.iter().enumerate() {
            sheet.write_string(2 + i as u32, 0, *label).expect("label");
            sheet.write_string(2 + i as u32, 1, *value).expect("value");
        }
        for (c, h) in ["KPI", "Description", "Value", "Comment"].iter().enumerate() {
            sheet.write_string(TABLE_ROW, c as u16, *h).expect("table header");
        }
        for (i, (id, v)) in self.values.iter().enumerate() {
            let row = TABLE_ROW + 1 + i as u32;
            sheet.write_string(row, 0, *id).expect("id");
            sheet.write_string(row, 1, format!("{id} description")).expect("description");
            match v {
                Val::Num(n) => sheet.write_number(row, 2, *n).map(|_| ()),
                Val::Text(t) => sheet.write_string(row, 2, *t).map(|_| ()),
                Val::Blank => Ok(()),
            }
            .expect("value");
        }
        book.save_to_buffer().expect("xlsx")
    }
}
