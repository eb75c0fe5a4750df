// KeyChest: small progressive enhancements. Every page works without this file.
document.documentElement.classList.add("js");

// The team switcher submits itself when a team is chosen (the button stays for no-JS).
for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

// Destructive buttons ask first: <button data-confirm="Remove example.com:443?">.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const message = button && button.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// Filter forms submit on change of a select (search still needs Enter or the button).
for (const form of document.querySelectorAll("form[data-filter]")) {
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => form.requestSubmit());
  }
}

// The channel form shows only the fields of the chosen kind (all of them without JavaScript).
for (const form of document.querySelectorAll("form[data-channel-form]")) {
  const kind = form.querySelector("select[name=kind]");
  const show = () => {
    for (const field of form.querySelectorAll("[data-for-kinds]")) {
      field.hidden = !field.dataset.forKinds.split(" ").includes(kind.value);
    }
  };
  kind.addEventListener("change", show);
  show();
}
