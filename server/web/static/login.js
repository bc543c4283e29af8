"use strict";
(function () {
  const config = window.Suitcase.config();
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.hidden = true;
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: form.email.value, password: form.password.value }),
    });
    if (response.ok) {
      window.location.href = config.next || "/fleet";
      return;
    }
    error.textContent = await window.Suitcase.errorText(response);
    error.hidden = false;
  });
})();
