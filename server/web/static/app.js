/* Shared by every page: log out, and a small helper namespace for the page scripts. */
"use strict";
(function () {
  const Suitcase = (window.Suitcase = window.Suitcase || {});
  Suitcase.config = function () {
    const el = document.getElementById("page-config");
    return el ? JSON.parse(el.textContent) : {};
  };
  Suitcase.csrf = async function () {
    const r = await fetch("/api/v1/auth/me", { credentials: "same-origin" });
    if (!r.ok) return "";
    return (await r.json()).csrf || "";
  };
  Suitcase.post = async function (url, body) {
    const token = await Suitcase.csrf();
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(body),
    });
  };
  Suitcase.errorText = async function (response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    } catch (e) { /* not JSON */ }
    return response.status + " " + response.statusText;
  };
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async function () {
      await fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin" });
      window.location.href = "/login";
    });
  }
})();
