import { api, auth, errorBox } from "../api.js";
import { h, heading } from "../ui.js";

export function render(main, { notice, onSignedIn }) {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off",
    spellcheck: "false", required: true, "aria-describedby": "api-key-hint" });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const button = h("button", { type: "submit", text: "Sign in" });
  const form = h("form", { class: "card signin", novalidate: true },
    heading("Sign in"),
    h("p", { text: "Use an API key of your account (clearcut keys create --account NAME prints one)." }),
    h("div", { class: "field" },
      h("label", { for: "api-key", text: "API key" }), input,
      h("small", { class: "hint", id: "api-key-hint",
        text: "Kept only in this browser tab (session storage) and sent as the x-api-key header." })),
    h("div", { class: "actions" }, button),
    status);
  if (notice) status.append(errorBox(notice, "Signed out"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const key = input.value.trim();
    if (!key) {
      status.append(h("p", { class: "error-box", role: "alert", text: "Enter an API key." }));
      input.focus();
      return;
    }
    button.disabled = true;
    status.append(h("p", { text: "Checking the key…" }));
    try {
      const info = await api("/v2/account", { key });
      auth.set(key);
      onSignedIn(info);
    } catch (err) {
      status.replaceChildren(errorBox(err, "Sign-in failed"));
      input.setAttribute("aria-invalid", "true");
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  input.focus();
}
