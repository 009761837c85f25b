fn main() {
    println!("iapt-intake");
}
