// Passwords too common to accept (DESIGN.md §11): the long-enough entries of
// the well-known breach top lists, a small built-in list rather than a
// service (no password ever leaves the gateway). Compared case-insensitively.
export const COMMON_PASSWORDS: ReadonlySet<string> = new Set([
  "1234567890", "12345678910", "123456789012", "0987654321", "1122334455", "1234512345", "1111111111", "0000000000",
  "123123123123", "1q2w3e4r5t", "1q2w3e4r5t6y", "1qaz2wsx3edc", "zaq12wsxcde3", "q1w2e3r4t5", "q1w2e3r4t5y6", "qwertyuiop",
  "qwertyuiop1", "qwerty1234", "qwerty12345", "qwerty123456", "asdfghjkl1", "asdfghjkl;", "zxcvbnm123", "1234qwerasdf",
  "password12", "password123", "password1234", "password12345", "password!1", "password!!", "passw0rd12", "passw0rd123",
  "p@ssw0rd123", "p@ssword123", "p@ssw0rd!!", "mypassword", "mypassword1", "secretpassword", "passwordpassword", "letmein123",
  "letmein1234", "welcome123", "welcome1234", "welcome2024", "welcome2025", "welcome2026", "changeme123", "changeme1234",
  "administrator", "admin12345", "admin123456", "iloveyou123", "iloveyou12", "trustno1234", "football123", "baseball123",
  "basketball", "basketball1", "superman123", "batman12345", "starwars123", "pokemon1234", "minecraft1", "minecraft123",
  "monkey1234", "dragon1234", "sunshine123", "princess123", "computer123", "whatever123", "internet123", "master1234",
  "michael123", "jennifer123", "jordan2323", "liverpool1", "chelsea123", "arsenal123", "abcdefghij", "abcdefg123",
  "abc1234567", "abcd123456", "abcd1234!!", "aa12345678", "a123456789", "123456789a", "1234567890a", "0123456789",
  "987654321a", "qazwsxedc1", "qazwsxedcrfv", "summer2024", "summer2025", "summer2026", "winter2024", "winter2025",
  "winter2026", "spring2025", "spring2026", "autumn2025", "football1!", "unbelievable", "paygate123", "paygate2026",
]);
