// Track C rating page. Text from the server is only ever inserted with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    session: null, queue: [], item: null, position: 1, active: 0,
    scores: {}, preference: null, busy: false,
  };

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(path, body) {
    const options = { method: "GET", headers: { Accept: "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = state.session.csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch("api/" + path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      throw new ApiError((data && data.error) || "HTTP " + response.status, response.status);
    }
    return data;
  }

  function requestId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const pairwise = () => state.session.mode === "pairwise";
  const rated = () => state.queue.filter((q) => q.rated).length;
  const setStatus = (text, isError) => {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  };

  function fatal(text) {
    $("main").hidden = true;
    $("done").hidden = true;
    $("fatal").hidden = false;
    $("fatal").textContent = text;
    $("progress-text").textContent = "";
  }

  function updateProgress() {
    const total = state.queue.length;
    $("progress-text").textContent = `${rated()} of ${total} rated`;
    $("progress").max = Math.max(total, 1);
    $("progress").value = rated();
    $("position").textContent = `Item ${state.position} of ${total}`;
    $("prev").disabled = state.position <= 1;
    $("next").disabled = state.position >= total;
  }

  function buildDimensions() {
    const box = $("dimensions");
    state.session.dimensions.forEach((dim, index) => {
      const set = document.createElement("fieldset");
      set.className = "dimension";
      set.tabIndex = -1;
      set.dataset.index = String(index);
      const legend = document.createElement("legend");
      legend.textContent = `${dim.title}`;
      const definition = document.createElement("p");
      definition.className = "definition";
      definition.textContent = dim.definition;
      const scale = document.createElement("div");
      scale.className = "scale";
      for (const step of state.session.scale) {
        const label = document.createElement("label");
        label.className = "choice";
        const input = document.createElement("input");
        input.type = "radio";
        input.name = dim.key;
        input.value = String(step.value);
        input.addEventListener("change", () => { setScore(index, step.value, false); });
        const num = document.createElement("span");
        num.className = "num";
        num.textContent = String(step.value);
        const text = document.createElement("span");
        text.className = "label";
        text.textContent = step.label;
        label.append(input, num, text);
        scale.append(label);
      }
      set.addEventListener("focusin", () => setActive(index, false));
      set.addEventListener("click", () => setActive(index, false));
      set.append(legend, definition, scale);
      box.append(set);
    });
  }

  function buildCriteria() {
    // Pairwise: the four dimensions to weigh, collapsed under the question.
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Weigh the four dimensions together";
    const list = document.createElement("dl");
    for (const dim of state.session.dimensions) {
      const term = document.createElement("dt");
      term.textContent = dim.title;
      const text = document.createElement("dd");
      text.textContent = dim.definition;
      list.append(term, text);
    }
    details.append(summary, list);
    $("preference").append(details);
  }

  function renderChoices() {
    document.querySelectorAll(".choice").forEach((label) => {
      label.classList.toggle("checked", label.querySelector("input").checked);
    });
  }

  function setActive(index, focus) {
    const sets = document.querySelectorAll("#dimensions .dimension");
    state.active = Math.max(0, Math.min(index, sets.length - 1));
    sets.forEach((set, i) => {
      set.classList.toggle("active", i === state.active);
      if (i === state.active) set.setAttribute("aria-current", "true"); else set.removeAttribute("aria-current");
    });
    if (focus && sets[state.active]) sets[state.active].focus({ preventScroll: false });
  }

  function setScore(index, value, advance) {
    const dim = state.session.dimensions[index];
    state.scores[dim.key] = value;
    const input = document.querySelector(`input[name="${dim.key}"][value="${value}"]`);
    if (input) input.checked = true;
    renderChoices();
    setActive(advance && index + 1 < state.session.dimensions.length ? index + 1 : index, advance);
    if (advance && index + 1 >= state.session.dimensions.length) $("submit").focus();
  }

  function setPreference(value) {
    state.preference = value;
    const input = document.querySelector(`input[name="preference"][value="${value}"]`);
    if (input) input.checked = true;
    renderChoices();
  }

  function fillForm(rating) {
    state.scores = {};
    state.preference = null;
    document.querySelectorAll("#form input[type=radio]").forEach((input) => { input.checked = false; });
    $("harm-a").checked = false;
    $("harm-b").checked = false;
    $("comment").value = "";
    if (rating) {
      if (pairwise()) {
        setPreference(rating.preference);
        $("harm-a").checked = rating.harm_a;
        $("harm-b").checked = rating.harm_b;
      } else {
        state.session.dimensions.forEach((dim) => {
          state.scores[dim.key] = rating.scores[dim.key];
          const input = document.querySelector(`input[name="${dim.key}"][value="${rating.scores[dim.key]}"]`);
          if (input) input.checked = true;
        });
        $("harm-a").checked = rating.harm;
      }
      $("comment").value = rating.comment;
    }
    renderChoices();
  }

  async function show(position) {
    const entry = state.queue[position - 1];
    if (!entry) return;
    let item;
    try {
      item = await api("item/" + encodeURIComponent(entry.item));
    } catch (e) {
      setStatus(`Could not load the item: ${e.message}`, true);
      return;
    }
    state.item = item;
    state.position = position;
    history.replaceState(null, "", "#" + position);
    $("done").hidden = true;
    $("main").hidden = false;
    $("question").textContent = item.question;
    $("reference-box").hidden = item.reference === null;
    $("reference").textContent = item.reference === null ? "" : item.reference;
    $("answer-a").textContent = item.answers[0].text;
    $("answer-title-a").textContent = pairwise() ? "Answer A" : "Answer";
    $("answer-box-b").hidden = !pairwise();
    $("answer-b").textContent = pairwise() ? item.answers[1].text : "";
    fillForm(item.rating);
    $("revision-note").textContent = item.rating ? "Already rated: saving again keeps the earlier version too." : "";
    setStatus("", false);
    updateProgress();
    if (!pairwise()) {
      const missing = state.session.dimensions.findIndex((d) => !(d.key in state.scores));
      setActive(missing < 0 ? 0 : missing, true);
    } else {
      $("preference").focus();
    }
    window.scrollTo(0, 0);
  }

  function showDone() {
    $("main").hidden = true;
    $("done").hidden = false;
    $("done-text").textContent = `All ${state.queue.length} items are rated. Thank you. ` +
      "You can still go back and revise any of them; the earlier versions are kept.";
    history.replaceState(null, "", "#done");
    updateProgress();
    $("review").focus();
  }

  async function submit() {
    if (state.busy || !state.item) return;
    const body = { item: state.item.item, comment: $("comment").value, request_id: requestId() };
    if (pairwise()) {
      if (!state.preference) { setStatus("Choose A, B or about the same first (keys A, B, T).", true); return; }
      Object.assign(body, { preference: state.preference, harm_a: $("harm-a").checked, harm_b: $("harm-b").checked });
    } else {
      const missing = state.session.dimensions.filter((d) => !(d.key in state.scores));
      if (missing.length) {
        setStatus(`Score every dimension first: ${missing.map((d) => d.title).join(", ")}.`, true);
        setActive(state.session.dimensions.indexOf(missing[0]), true);
        return;
      }
      Object.assign(body, { scores: { ...state.scores }, harm: $("harm-a").checked });
    }
    state.busy = true;
    setStatus("Saving…", false);
    let result;
    try {
      result = await save(body);
    } catch (e) {
      const why = e instanceof ApiError ? e.message : "the server cannot be reached (is it still running?)";
      setStatus(`Not saved: ${why}. Press Enter to try again.`, true);
      return;
    } finally {
      state.busy = false;
    }
    state.queue[state.position - 1].rated = true;
    setStatus(`Saved (${result.rated} of ${result.total} rated).`, false);
    if (result.next === null) showDone(); else await show(result.next);
  }

  async function save(body) {
    try {
      return await api("rating", body);
    } catch (e) {
      // A server restart issues new CSRF tokens; a lost connection loses the answer. Retry once with the
      // same request_id, so a rating that did reach the store is not stored twice.
      if (e instanceof ApiError && !(e.status === 403 && /CSRF/.test(e.message))) throw e;
      if (e instanceof ApiError) state.session = await api("session");
      return await api("rating", body);
    }
  }

  function onKey(event) {
    if (!state.session || $("main").hidden || event.altKey || event.ctrlKey && event.key !== "Enter" || event.metaKey && event.key !== "Enter") return;
    const target = event.target;
    if (target.tagName === "TEXTAREA") {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      return;
    }
    const key = event.key;
    if (key === "Enter") {
      if (target.tagName === "BUTTON" && target.id !== "submit") return;
      event.preventDefault();
      submit();
    } else if (!pairwise() && /^[1-5]$/.test(key)) {
      event.preventDefault();
      setScore(state.active, Number(key), true);
    } else if (!pairwise() && (key === "ArrowDown" || key === "ArrowUp")) {
      event.preventDefault();
      setActive(state.active + (key === "ArrowDown" ? 1 : -1), true);
    } else if (!pairwise() && (key === "h" || key === "H")) {
      $("harm-a").checked = !$("harm-a").checked;
    } else if (pairwise() && /^[abtABT]$/.test(key)) {
      setPreference({ a: "A", b: "B", t: "tie" }[key.toLowerCase()]);
    } else if ((key === "p" || key === "P") && state.position > 1) {
      show(state.position - 1);
    } else if ((key === "n" || key === "N") && state.position < state.queue.length) {
      show(state.position + 1);
    }
  }

  function firstUnrated() {
    const entry = state.queue.find((q) => !q.rated);
    if (entry) show(entry.position); else showDone();
  }

  async function start() {
    try {
      state.session = await api("session");
      state.queue = (await api("queue")).items;
    } catch (e) {
      fatal(`This link does not work (${e.message}). Ask the study organiser for your link.`);
      return;
    }
    $("rater").textContent = `Rater: ${state.session.rater}`;
    if (pairwise()) {
      buildCriteria();
      $("preference").hidden = false;
      $("answers").classList.add("pair");
      $("layout").classList.add("pair");
      $("keys").textContent = "Keys: A / B / T choose the better answer (T: about the same); Enter saves; " +
        "P / N go to the previous / next item.";
    } else {
      buildDimensions();
      $("keys").textContent = "Keys: 1-5 score the highlighted dimension and move to the next; Up / Down change " +
        "dimension; H flags possible harm; Enter saves; P / N go to the previous / next item.";
    }
    document.querySelectorAll("#preference input").forEach((input) => {
      input.addEventListener("change", () => setPreference(input.value));
    });
    $("form").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
    $("prev").addEventListener("click", () => show(state.position - 1));
    $("next").addEventListener("click", () => show(state.position + 1));
    $("first-unrated").addEventListener("click", firstUnrated);
    $("review").addEventListener("click", () => show(1));
    document.addEventListener("keydown", onKey);
    window.addEventListener("hashchange", () => {
      const wanted = Number.parseInt(location.hash.slice(1), 10);
      if (wanted >= 1 && wanted <= state.queue.length && wanted !== state.position) show(wanted);
    });
    const fromHash = Number.parseInt(location.hash.slice(1), 10);
    if (fromHash >= 1 && fromHash <= state.queue.length) await show(fromHash);
    else if (state.session.next === null) showDone();
    else await show(state.session.next);
  }

  start();
})();
