// REST calls of the pages: same-origin, session-authenticated, CSRF token from the page, and the API's one error
// shape ({"error": {"code", "message", "details"}}) turned into an ApiError with a message for people.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

async function parse(response) {
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  const err = body && body.error ? body.error : {};
  throw new ApiError(response.status, err.code || `http_${response.status}`,
    err.message || `${response.status} ${response.statusText}`, err.details);
}

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  return parse(response);
}

export async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-CSRFToken": document.body.dataset.csrf,
    },
    body: JSON.stringify(body ?? {}),
  });
  return parse(response);
}

/** Show a short message in the page's status line (errors stay until the next message). */
export function flash(message, kind = "info") {
  const box = document.getElementById("gf-flash");
  if (!box) return;
  box.hidden = false;
  box.dataset.kind = kind;
  box.textContent = message;
}

/** Ask for a reason and a confirmation in the page's dialog; resolves to the reason, or null when cancelled. */
export function askReason(what) {
  const dialog = document.getElementById("gf-confirm");
  const form = dialog.querySelector("form");
  const text = dialog.querySelector("textarea");
  const error = dialog.querySelector(".gf-confirm-error");
  dialog.querySelector(".gf-confirm-what").textContent = what;
  text.value = "";
  error.textContent = "";
  dialog.showModal();
  text.focus();
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      dialog.querySelector(".gf-confirm-cancel").removeEventListener("click", onCancel);
      dialog.close();
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) {
        error.textContent = "A reason is required: it is recorded in the audit trail.";
        return;
      }
      done(text.value.trim());
    };
    const onCancel = (ev) => { ev.preventDefault(); done(null); };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    dialog.querySelector(".gf-confirm-cancel").addEventListener("click", onCancel);
  });
}

/**
 * A staff action: the dialog asks for the reason (required) and the confirmation, then POSTs {reason, ...extra}
 * (the reason under `field` for an API that calls it otherwise, e.g. "note").
 * Returns the API's answer, or null when cancelled or refused (the refusal is shown in the status line).
 */
export async function confirmedAction({ url, what, extra = {}, field = "reason" }) {
  const reason = await askReason(what);
  if (reason === null) return null;
  try {
    const result = await postJSON(url, { [field]: reason, ...extra });
    flash(`Done: ${what}.`, "ok");
    return result;
  } catch (e) {
    flash(`Not done: ${what}: ${e.message}`, "error");
    return null;
  }
}
