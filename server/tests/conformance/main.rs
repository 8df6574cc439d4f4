//! The storage conformance suite: every rule of the `Storage` contract
//! (`server/src/storage/mod.rs`), written once as `async fn(&dyn Storage)` and run against each
//! backend, in the style of object_store's shared integration tests.
//!
//! Every test gets a fresh database: a new SQLite file in a temporary directory, or a new
//! PostgreSQL database that is dropped afterwards even when the test panics.
//!
//!     cargo test --no-default-features --features sqlite --test conformance
//!     cargo test --no-default-features --features postgres --test conformance
//!
//! PostgreSQL: the admin URL comes from `DECENTCOM_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); when the server cannot be reached the
//! PostgreSQL tests fail (they are never skipped).

#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

mod fixtures;
mod harness;

mod channels;
mod devices;
mod dms;
mod invites;
mod media;
mod members;
mod messages;
mod reactions;
mod roles;
mod search;
mod sessions;
mod threads;
mod users;

/// Instantiates the suite: for every `domain { test, … }` listed, one
/// `#[tokio::test]` per enabled backend, named `<backend>::<domain>::<test>`, each calling
/// `crate::<domain>::<test>(&dyn Storage)` on its own fresh database.
macro_rules! conformance_suite {
    ($($domain:ident { $($test:ident),* $(,)? })*) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                mod $domain {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $test() {
                            let db = crate::harness::SqliteTestDb::create().await;
                            crate::$domain::$test(db.storage()).await;
                        }
                    )*
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                mod $domain {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $test() {
                            let db = crate::harness::PostgresTestDb::create().await;
                            crate::$domain::$test(db.storage()).await;
                        }
                    )*
                }
            )*
        }
    };
}

conformance_suite! {
    users {
        ping_answers_and_names_the_backend,
        first_user_becomes_member_with_everyone_and_admin,
        second_user_in_open_mode_becomes_member_with_everyone_only,
        user_registered_without_open_membership_is_not_a_member,
        bot_registration_creates_pending_approval_and_no_membership,
        concurrent_first_logins_make_exactly_one_first_user,
        duplicate_pubkey_is_user_pubkey_conflict,
        get_user_by_id_and_pubkey_and_unknown_is_none,
        pubkey_bytes_round_trip_exactly,
        display_name_round_trips_unicode_and_clears,
        set_display_name_unknown_user_is_not_found,
        avatar_requires_existing_media_and_clears,
        set_avatar_unknown_user_is_not_found,
    }
    members {
        join_adds_everyone_and_is_a_no_op_for_a_member,
        leave_removes_roles_and_membership_but_keeps_sessions,
        kick_removes_membership_and_deletes_sessions,
        kick_of_non_member_still_deletes_sessions,
        list_members_orders_by_joined_at_and_counts_members_only,
        ban_records_ban_and_kicks_the_key_holder,
        ban_of_unknown_key_kicks_nobody_and_duplicate_is_conflict,
        unban_and_list_bans_newest_first,
        allowlist_add_contains_remove_and_list_oldest_first,
        bot_approval_makes_member_and_revocation_keeps_membership,
        list_pending_bots_oldest_first_excludes_approved_and_revoked,
        bot_approval_of_non_bot_is_not_found,
    }
    roles {
        builtin_roles_are_seeded,
        create_role_round_trips_and_lists_by_position_desc_then_id,
        get_role_unknown_is_none,
        update_role_patches_only_given_fields,
        update_role_unknown_is_not_found,
        builtin_role_rules_are_enforced_on_update,
        delete_role_removes_assignments_and_overrides,
        delete_builtin_role_is_invalid_input,
        assign_role_errors_not_member_unknown_role_and_duplicate,
        unassign_role_and_member_roles_order,
        member_roles_carry_permissions_and_are_empty_for_non_members,
        put_override_creates_replaces_and_lists_by_role_id,
        override_for_unknown_role_or_channel_is_invalid_reference,
    }
    channels {
        create_channel_round_trips_unicode_and_reuses_category,
        duplicate_channel_name_is_channel_name_conflict,
        list_channels_by_position_then_id_excludes_dms,
        get_channel_is_none_for_dm_and_unknown_ids,
        get_channel_access_loads_channel_and_positioned_overrides,
        update_channel_patches_clears_and_conflicts,
        delete_channel_cascades_to_messages_threads_attachments_and_overrides,
        ensure_default_channel_creates_only_when_no_text_channel_exists,
        ensure_default_channel_is_race_safe,
        delete_category_not_found_in_use_and_unused,
    }
    messages {
        create_and_get_message_round_trip_unicode,
        create_message_in_unknown_channel_or_thread_is_not_found,
        create_message_returns_what_get_message_loads,
        get_message_unknown_is_none,
        edit_message_sets_content_and_edited_at,
        edit_message_errors_unknown_and_deleted,
        delete_message_is_soft_idempotent_and_hides_attachments,
        delete_message_unknown_is_not_found,
        list_messages_empty_channel,
        list_messages_exactly_one_page_has_no_more,
        list_messages_pages_before_and_after_with_has_more,
        list_messages_cursors_at_first_and_last_id_and_beyond,
        list_messages_is_per_channel_and_excludes_thread_replies,
        list_messages_keeps_deleted_messages,
        attachments_are_linked_on_create_in_id_order,
        unusable_attachment_is_conflict_and_stores_nothing,
        list_messages_carries_attachments_reactions_and_thread_summary,
    }
    search {
        search_matches_whole_words_only_case_insensitively,
        search_prefix_terms_match_token_prefixes_only,
        search_requires_every_term,
        search_excludes_deleted_and_follows_edits,
        search_filters_by_channel,
        search_filters_by_author,
        search_created_bounds_are_exclusive,
        search_pages_with_cursor_and_exact_total_estimate,
        search_includes_thread_replies,
        search_matches_unicode_tokens,
        search_never_matches_tokens_longer_than_64_characters,
        search_results_carry_viewer_reactions,
        search_total_estimate_is_capped_at_1000,
    }
    reactions {
        toggle_reaction_adds_removes_and_replaces,
        toggle_reaction_on_unknown_message_is_not_found,
        reaction_emoji_round_trip_unicode,
        reaction_summaries_order_by_earliest_reaction_with_me_flag,
        remove_reaction_returns_the_emoji,
        list_reactors_by_user_id_desc_with_before_and_total,
        concurrent_toggles_keep_one_reaction_per_user,
    }
    threads {
        create_thread_is_idempotent_per_parent_and_creator_follows,
        create_thread_errors_unknown_reply_and_dm_parents,
        thread_reply_updates_counters_and_makes_author_follower,
        thread_replies_page_like_channel_messages,
        follow_is_idempotent_and_unfollow_reports,
        follow_unknown_thread_is_not_found,
        mark_thread_read_only_for_followers,
        get_thread_unknown_is_none,
        concurrent_replies_are_all_counted,
        concurrent_create_thread_creates_one,
    }
    invites {
        invite_round_trips_expiry_at_microsecond_precision,
        duplicate_invite_code_is_conflict,
        invite_with_unknown_grant_role_is_invalid_reference,
        list_active_invites_excludes_expired_and_exhausted_newest_first,
        delete_invite_reports_whether_it_existed,
        join_via_invite_assigns_granted_role_and_consumes_one_use,
        join_via_invite_not_found_expired_and_exhausted,
        join_via_invite_as_member_consumes_nothing,
        invite_join_consumes_exactly_max_uses_under_concurrency,
        deleting_granted_role_leaves_invite_granting_nothing,
        purge_expired_invites_deletes_only_expired,
    }
    sessions {
        challenge_take_is_single_use_and_round_trips_bytes_and_micros,
        expired_challenge_is_not_returned,
        put_challenge_replaces_pending_challenge,
        purge_expired_challenges_deletes_only_expired,
        session_round_trips_and_delete_reports,
        duplicate_token_hash_is_session_token_conflict,
        get_session_returns_expired_sessions,
        delete_user_sessions_returns_their_ids,
        purge_expired_sessions_deletes_only_expired,
        session_with_device_key_carries_device_pubkey,
        concurrent_takes_return_a_challenge_once,
        session_auth_loads_session_member_and_roles_in_one_call,
        session_auth_sees_every_change_at_once,
        session_auth_with_device_key_carries_device_pubkey,
    }
    media {
        put_media_round_trips_and_first_uploader_wins,
        get_media_unknown_is_none,
        record_uploads_creates_media_and_unlinked_attachments_in_order,
        record_uploads_with_unknown_media_is_invalid_reference_and_atomic,
        get_attachment_unknown_is_none,
    }
    dms {
        open_dm_is_idempotent_per_unordered_pair,
        open_dm_is_race_safe,
        open_dm_with_self_is_invalid_input,
        get_dm_and_channel_kind,
        send_dm_message_sets_last_message_and_sender_read_mark,
        send_dm_message_to_unknown_dm_is_not_found,
        hide_dm_hides_and_sending_reopens,
        open_dm_reopens_a_hidden_dm,
        list_dms_orders_by_last_message_then_newest_unused,
        mark_dm_read_sets_read_mark,
    }
    devices {
        register_device_key_creates_and_round_trips_bytes,
        register_device_key_recertifies_only_with_newer_certificate,
        register_device_key_owned_by_other_user,
        revoked_device_key_cannot_be_registered_again,
        list_device_keys_excludes_revoked_and_expired_oldest_first,
        revoke_device_key_deletes_only_its_sessions,
        revoke_device_key_of_unknown_or_other_user_is_none,
        concurrent_registrations_of_one_key_create_it_once,
    }
}
