// /ui's only script of its own: check an edited payload is a JSON object before the
// form is sent (the server checks again), with the message where the field is.
document.addEventListener("input", function (event) {
  var field = event.target;
  if (!field.matches || !field.matches("textarea.json")) return;
  var message = "";
  try {
    var value = JSON.parse(field.value);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      message = "The payload must be a JSON object.";
    }
  } catch (error) {
    message = "Not valid JSON: " + error.message;
  }
  field.setCustomValidity(message);
});

// Marks that scripts run here (tests tell the JavaScript-free browser apart by it).
document.documentElement.classList.add("js");

// A poll that met an ended session was redirected to the sign-in page: go there
// instead of swapping an empty list in.
document.addEventListener("htmx:beforeSwap", function (event) {
  var url = event.detail.xhr && event.detail.xhr.responseURL;
  if (url && new URL(url).pathname === "/ui/login") {
    event.detail.shouldSwap = false;
    window.location.assign(url);
  }
});
