// The payment page's inline JavaScript, as plain ES2017 strings (no build
// step, no external file). CLIENT_VALIDATORS mirrors domain/card.ts rule for
// rule and message for message; client-script.test.ts runs it in a VM against
// the server's validateCard so the two cannot drift apart.

export const CLIENT_VALIDATORS = String.raw`
var CARD_DIGITS_MIN = 12, CARD_DIGITS_MAX = 19, NAME_LENGTH_MAX = 100, EXPIRY_YEARS_AHEAD_MAX = 20;
function cardDigits(text) {
  var s = text.replace(/[\s-]/g, "");
  return /^\d*$/.test(s) ? s : null;
}
function luhnValid(digits) {
  if (!/^\d+$/.test(digits)) return false;
  var sum = 0;
  for (var i = 0; i < digits.length; i++) {
    var d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return sum % 10 === 0;
}
function parseExpiry(text) {
  var m = /^\s*(\d{1,2})\s*\/?\s*(\d{2}|\d{4})\s*$/.exec(text);
  if (!m) return null;
  var month = Number(m[1]);
  var year = m[2].length === 2 ? 2000 + Number(m[2]) : Number(m[2]);
  if (month < 1 || month > 12) return null;
  return { month: month, year: year };
}
function expiryProblem(month, year, nowMs) {
  var now = new Date(nowMs);
  var nowIndex = now.getUTCFullYear() * 12 + now.getUTCMonth();
  if (year * 12 + (month - 1) < nowIndex) return "expired";
  if (year > now.getUTCFullYear() + EXPIRY_YEARS_AHEAD_MAX) return "too_far";
  return null;
}
function checkField(field, value, nowMs) {
  if (field === "cardholderName") {
    var name = value.trim().replace(/\s+/g, " ");
    if (name.length === 0) return "Enter the name as it appears on the card.";
    if (name.length < 2 || name.length > NAME_LENGTH_MAX || /[\p{Cc}\p{Cf}]/u.test(name)) return "Enter the name on the card (2 to " + NAME_LENGTH_MAX + " characters).";
    return "";
  }
  if (field === "cardNumber") {
    var digits = cardDigits(value);
    if (value.trim() === "") return "Enter your card number.";
    if (digits === null) return "A card number has digits only.";
    if (digits.length < CARD_DIGITS_MIN || digits.length > CARD_DIGITS_MAX) return "A card number has " + CARD_DIGITS_MIN + " to " + CARD_DIGITS_MAX + " digits.";
    if (!luhnValid(digits)) return "This card number is not valid. Check it for typos.";
    return "";
  }
  if (field === "expiry") {
    if (value.trim() === "") return "Enter the expiry date (MM/YY).";
    var exp = parseExpiry(value);
    if (!exp) return "Enter the expiry date as MM/YY, for example 04/29.";
    var p = expiryProblem(exp.month, exp.year, nowMs);
    if (p === "expired") return "This card has expired.";
    if (p === "too_far") return "Check the expiry year.";
    return "";
  }
  if (field === "cvc") {
    var cvc = value.trim();
    if (cvc === "") return "Enter the security code (CVC).";
    if (!/^\d{3,4}$/.test(cvc)) return "The security code is 3 digits (4 on some cards).";
    return "";
  }
  return "";
}
var FIELDS = ["cardholderName", "cardNumber", "expiry", "cvc"];
function checkAll(values, nowMs) {
  var errors = {};
  for (var i = 0; i < FIELDS.length; i++) {
    var msg = checkField(FIELDS[i], values[FIELDS[i]] || "", nowMs);
    if (msg) errors[FIELDS[i]] = msg;
  }
  return errors;
}
`;

/** Formatting as the shopper types, errors as they leave a field, one submit. */
export const CLIENT_BEHAVIOUR = String.raw`
(function () {
  var form = document.getElementById("pay-form");
  if (!form) return;
  var button = document.getElementById("pay-button");
  var buttonLabel = button.textContent;
  var summary = document.getElementById("form-errors");
  var status = document.getElementById("form-status");
  var inputs = {};
  var touched = {};
  var submitting = false;
  FIELDS.forEach(function (name) { inputs[name] = document.getElementById(name); });

  function showError(name, msg) {
    var input = inputs[name];
    document.getElementById(name + "-error").textContent = msg;
    if (msg) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }
  function values() {
    var v = {};
    FIELDS.forEach(function (name) { v[name] = inputs[name].value; });
    return v;
  }
  function formatCardNumber(input) {
    var caret = input.selectionStart === null ? input.value.length : input.selectionStart;
    var digitsBefore = input.value.slice(0, caret).replace(/\D/g, "").length;
    var digits = input.value.replace(/\D/g, "").slice(0, CARD_DIGITS_MAX);
    var out = digits.replace(/(\d{4})(?=\d)/g, "$1 ");
    if (out === input.value) return;
    input.value = out;
    var pos = 0, seen = 0;
    while (pos < out.length && seen < digitsBefore) { if (out.charAt(pos) !== " ") seen++; pos++; }
    if (document.activeElement === input) input.setSelectionRange(pos, pos);
  }
  function formatExpiry(input, deleting) {
    var one = /^(\d)\s*\/$/.exec(input.value);
    if (one) { input.value = "0" + one[1] + "/"; return; }
    var v = input.value.replace(/\D/g, "").slice(0, 4);
    if (v.length === 1 && v > "1") v = "0" + v;
    if (v.length > 2 || (v.length === 2 && !deleting)) v = v.slice(0, 2) + "/" + v.slice(2);
    if (v !== input.value) input.value = v;
  }
  inputs.cardNumber.addEventListener("input", function () { formatCardNumber(inputs.cardNumber); });
  inputs.expiry.addEventListener("input", function (e) { formatExpiry(inputs.expiry, (e.inputType || "").indexOf("delete") === 0); });
  inputs.cvc.addEventListener("input", function () {
    var v = inputs.cvc.value.replace(/\D/g, "").slice(0, 4);
    if (v !== inputs.cvc.value) inputs.cvc.value = v;
  });
  FIELDS.forEach(function (name) {
    inputs[name].addEventListener("blur", function () {
      if (inputs[name].value === "" && !touched[name]) return; // tabbing through is not a mistake
      touched[name] = true;
      showError(name, checkField(name, inputs[name].value, Date.now()));
    });
    inputs[name].addEventListener("input", function () {
      // Clear an error as soon as it is fixed; never nag while typing.
      if (inputs[name].getAttribute("aria-invalid") === "true" && !checkField(name, inputs[name].value, Date.now())) showError(name, "");
    });
  });

  form.addEventListener("submit", function (ev) {
    if (submitting) { ev.preventDefault(); return; }
    var errors = checkAll(values(), Date.now());
    var bad = FIELDS.filter(function (name) { return errors[name]; });
    FIELDS.forEach(function (name) { touched[name] = true; showError(name, errors[name] || ""); });
    if (bad.length > 0) {
      ev.preventDefault();
      while (summary.firstChild) summary.removeChild(summary.firstChild);
      var head = document.createElement("strong");
      head.textContent = bad.length === 1 ? "There is a problem with your card details:" : "There are " + bad.length + " problems with your card details:";
      var list = document.createElement("ul");
      bad.forEach(function (name) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = "#" + name;
        a.textContent = errors[name];
        a.addEventListener("click", function (e) { e.preventDefault(); inputs[name].focus(); });
        li.appendChild(a);
        list.appendChild(li);
      });
      summary.appendChild(head);
      summary.appendChild(list);
      inputs[bad[0]].focus();
      return;
    }
    while (summary.firstChild) summary.removeChild(summary.firstChild);
    submitting = true;
    button.disabled = true;
    button.textContent = "Processing\u2026";
    form.setAttribute("aria-busy", "true");
    status.textContent = "Processing your payment. Please do not close this page.";
  });
  // Back from the result page restores this page as it was left: usable again
  // (the same hidden key makes a resubmission safe).
  window.addEventListener("pageshow", function (e) {
    if (!e.persisted) return;
    submitting = false;
    button.disabled = false;
    button.textContent = buttonLabel;
    form.removeAttribute("aria-busy");
    status.textContent = "";
  });
})();
`;

/** Result pages: a "go back" button that returns to the filled-in form. */
export const RESULT_BEHAVIOUR = String.raw`
(function () {
  var back = document.querySelectorAll("[data-back]");
  for (var i = 0; i < back.length; i++) {
    back[i].addEventListener("click", function (e) {
      if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
    });
  }
})();
`;
